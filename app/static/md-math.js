/**
 * Math for the Markdown renderer: TeX rendered by KaTeX (served from /static/vendor/,
 * built by scripts/web-packages) as MathML, which Chromium, Firefox and Safari draw
 * natively: no fonts or style sheet to load, and KaTeX builds the nodes with
 * createElementNS, never through an HTML parser. `trust: false` keeps \href, \url,
 * \includegraphics and raw HTML commands out; a formula KaTeX refuses shows as its source.
 *
 * Inline math re-renders with the open paragraph on every chunk, so rendered formulas are
 * kept in a small LRU cache and cloned: a chunk costs a clone, not a KaTeX parse.
 */

// Loaded before any rendering (top-level await). Without the generated vendor/ files the
// page still works: formulas then show as their TeX source.
const katex = await import("./vendor/katex.js").then((m) => m.default, () => null);

const OPTIONS = {
  output: "mathml",
  throwOnError: true,
  trust: false,
  strict: "ignore",
  maxSize: 50, // em: an enormous \rule or \kern cannot cover the page
  maxExpand: 200, // macro expansions: a recursive \def cannot hang the page
};
const MAX_TEX = 4096; // longer formulas show as source
const CACHE_SIZE = 256;
const cache = new Map();

function build(tex, display) {
  const holder = document.createElement("span");
  holder.className = display ? "md-math md-math-display" : "md-math";
  if (katex && tex.length <= MAX_TEX) {
    try {
      katex.render(tex, holder, { ...OPTIONS, displayMode: display });
      return holder;
    } catch {
      // KaTeX refused the formula (a typo, an unknown or untrusted command): show the source.
    }
  }
  holder.className += " md-math-error";
  holder.textContent = tex;
  return holder;
}

/** A node showing `tex` (display or inline); a fresh copy on every call. */
export function mathNode(tex, display) {
  const key = (display ? "D" : "I") + tex;
  let node = cache.get(key);
  if (node) {
    cache.delete(key); // most recently used goes last
  } else {
    node = build(tex, display);
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value);
  }
  cache.set(key, node);
  return node.cloneNode(true);
}
