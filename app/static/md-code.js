/**
 * Syntax highlighting of fenced code blocks, with Prism (served from /static/vendor/,
 * built by scripts/web-packages). Prism is used only as a tokenizer (Prism.tokenize): the
 * spans are built here with createElement and text nodes, so no code text ever goes through
 * an HTML parser. Token classes are `tok-<type>`, styled in markdown.css.
 *
 * A block is highlighted once, when its closing fence arrives: while it streams it is
 * appended to as plain text, so the cost per chunk stays that of the chunk.
 */

// Loaded before any rendering (top-level await). Without the generated vendor/ files the
// page still works: code then shows unhighlighted.
const Prism = await import("./vendor/prism.js").then((m) => m.default, () => null);

const MAX_CODE = 100_000; // longer blocks stay plain: tokenizing them would stall the page
const ALIASES = { sh: "bash", zsh: "bash", console: "shell-session", shell: "bash", golang: "go",
  rs: "rust", "c++": "cpp", "c#": "csharp", cs: "csharp", kt: "kotlin", yml: "yaml",
  dockerfile: "docker", make: "makefile", text: "", plaintext: "", txt: "" };

function grammarFor(info) {
  let lang = info.split(/\s/, 1)[0].toLowerCase();
  if (Object.hasOwn(ALIASES, lang)) lang = ALIASES[lang];
  if (!Prism || !lang || !Object.hasOwn(Prism.languages, lang)) return null;
  const grammar = Prism.languages[lang];
  return grammar && typeof grammar === "object" ? grammar : null;
}

function className(token) {
  const names = [token.type].concat(token.alias ?? []);
  return names.map((n) => "tok-" + String(n).replace(/[^\w-]/g, "")).join(" ");
}

function append(parent, content) {
  if (typeof content === "string") {
    parent.append(document.createTextNode(content));
    return;
  }
  if (Array.isArray(content)) {
    for (const part of content) append(parent, part);
    return;
  }
  const span = document.createElement("span");
  span.className = className(content);
  append(span, content.content);
  parent.append(span);
}

/** Replaces the children of `code` with `text`, highlighted for the info string's language. */
export function highlightInto(code, info, text) {
  const grammar = text.length <= MAX_CODE ? grammarFor(info) : null;
  if (!grammar) {
    code.replaceChildren(document.createTextNode(text));
    return;
  }
  const frag = document.createDocumentFragment();
  append(frag, Prism.tokenize(text, grammar));
  code.replaceChildren(frag);
}
