/**
 * The inline level of the Markdown renderer: emphasis, code spans, math, links, autolinks,
 * entities and line breaks, built as DOM nodes (createElement / createTextNode only).
 * Links keep only absolute http:, https: and mailto: URLs; images become links and are
 * never fetched. Emphasis follows CommonMark's delimiter algorithm over a linked list, so
 * hostile runs of `*` or `[` cost linear time.
 */

import { mathNode } from "./md-math.js";

const SEARCH_LIMIT = 4096; // how far an inline construct looks ahead for its end
const ASCII_PUNCT = /[!-/:-@[-`{-~]/;
const UNICODE_PUNCT = /[\p{P}\p{S}]/u;
const WHITESPACE = /\s/;
const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);

/** The URL if it is an absolute http(s)/mailto URL, else null. */
export function safeHref(raw) {
  let url;
  try {
    url = new URL(String(raw).trim());
  } catch {
    return null; // relative or malformed: refused, there is no base to resolve against
  }
  return SAFE_SCHEMES.has(url.protocol) ? url.href : null;
}

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

class Inline {
  constructor() {
    this.head = { prev: null, next: null };
    this.tail = this.head;
  }

  push(item) {
    item.prev = this.tail;
    item.next = null;
    this.tail.next = item;
    this.tail = item;
    return item;
  }

  insertAfter(at, item) {
    item.prev = at;
    item.next = at.next;
    if (at.next) at.next.prev = item;
    else this.tail = item;
    at.next = item;
  }

  remove(item) {
    item.prev.next = item.next;
    if (item.next) item.next.prev = item.prev;
    else this.tail = item.prev;
  }

  /** Moves every item after `after` into `parent`. */
  drainInto(parent, after, until = null) {
    let it = after.next;
    while (it && it !== until) {
      const next = it.next;
      parent.append(toNode(it));
      this.remove(it);
      it = next;
    }
  }
}

function toNode(item) {
  if (item.node) return item.node;
  if (item.delim) return document.createTextNode(item.ch.repeat(item.n));
  return document.createTextNode(item.text);
}

const ENTITIES = {
  amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0", copy: "\u00a9",
  reg: "\u00ae", trade: "\u2122", hellip: "\u2026", mdash: "\u2014", ndash: "\u2013",
};
const RE_ENTITY = /^&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-z]{2,6}));/;

function decodeEntity(text, i) {
  const m = RE_ENTITY.exec(text.slice(i, i + 12));
  if (!m) return null;
  if (m[3]) return m[3] in ENTITIES ? { text: ENTITIES[m[3]], len: m[0].length } : null;
  const cp = m[1] ? parseInt(m[1], 10) : parseInt(m[2], 16);
  const ok = cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
  return { text: ok ? String.fromCodePoint(cp) : "\ufffd", len: m[0].length };
}

function unescapeText(s) {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\" && ASCII_PUNCT.test(s[i + 1] || "")) {
      out += s[++i];
    } else if (c === "&") {
      const ent = decodeEntity(s, i);
      if (ent) {
        out += ent.text;
        i += ent.len - 1;
      } else out += c;
    } else out += c;
  }
  return out;
}

/** `(dest "title")` after a closing bracket at `j`; null when it is not one. */
function parseLinkTail(text, j) {
  if (text[j] !== "(") return null;
  const limit = Math.min(text.length, j + SEARCH_LIMIT);
  let i = j + 1;
  const skipSpace = () => {
    while (i < limit && (text[i] === " " || text[i] === "\t" || text[i] === "\n")) i++;
  };
  skipSpace();
  let dest;
  if (text[i] === "<") {
    const k = text.indexOf(">", i + 1);
    if (k < 0 || k >= limit) return null;
    dest = text.slice(i + 1, k);
    if (/[\n<]/.test(dest)) return null;
    i = k + 1;
  } else {
    const s = i;
    let depth = 0;
    while (i < limit) {
      const c = text[i];
      if (c === "\\" && ASCII_PUNCT.test(text[i + 1] || "")) {
        i += 2;
        continue;
      }
      if (c === "(") depth++;
      else if (c === ")") {
        if (depth === 0) break;
        depth--;
      } else if (c <= " ") break;
      i++;
    }
    if (depth !== 0) return null;
    dest = text.slice(s, i);
  }
  skipSpace();
  let title = null;
  const q = text[i];
  if (q === '"' || q === "'" || q === "(") {
    const close = q === "(" ? ")" : q;
    let k = i + 1;
    while (k < limit && text[k] !== close) k += text[k] === "\\" ? 2 : 1;
    if (k >= limit) return null;
    title = unescapeText(text.slice(i + 1, k));
    i = k + 1;
    skipSpace();
  }
  if (text[i] !== ")") return null;
  return { dest: unescapeText(dest), title, end: i + 1 };
}

function makeLink(href, title) {
  const safe = href === null ? null : safeHref(href);
  if (!safe) {
    const span = el("span", "md-link-refused");
    span.title = "Link not shown: only http, https and mailto links are allowed";
    return span;
  }
  const a = el("a");
  a.href = safe;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow ugc";
  a.referrerPolicy = "no-referrer";
  if (title) a.title = title;
  return a;
}

const RE_AUTOLINK = /^<([A-Za-z][A-Za-z0-9.+-]{1,31}:[^\s<>]*)>/;
const RE_EMAIL_AUTOLINK =
  /^<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)>/;
const RE_BARE_URL = /^(?:https?:\/\/|www\.)[^\s<]+/i;

function bareUrlAt(text, i) {
  const m = RE_BARE_URL.exec(text.slice(i, i + SEARCH_LIMIT));
  if (!m) return null;
  let url = m[0];
  for (;;) {
    const last = url[url.length - 1];
    if ("?!.,:*_~'\";".includes(last)) url = url.slice(0, -1);
    else if (last === ")" && url.split("(").length < url.split(")").length) url = url.slice(0, -1);
    else break;
  }
  if (/^(?:https?:\/\/|www\.)$/i.test(url)) return null;
  const href = /^www\./i.test(url) ? "http://" + url : url;
  return safeHref(href) ? { url, href } : null;
}

function flanking(text, i, n) {
  const before = i > 0 ? text[i - 1] : "\n";
  const after = i + n < text.length ? text[i + n] : "\n";
  const wsBefore = WHITESPACE.test(before);
  const wsAfter = WHITESPACE.test(after);
  const pBefore = UNICODE_PUNCT.test(before);
  const pAfter = UNICODE_PUNCT.test(after);
  const left = !wsAfter && (!pAfter || wsBefore || pBefore);
  const right = !wsBefore && (!pBefore || wsAfter || pAfter);
  return { left, right, pBefore, pAfter };
}

/**
 * Where inline math can close. `$…$` follows Pandoc: the opening `$` has a non-space after
 * it, the closing one a non-space before it and no digit after it, so "$5 and $10" stays
 * text. `$$…$$`, `\(…\)` and `\[…\]` close at the next closer. Each finder remembers the
 * last closer it found, so a text full of openers costs linear time, not quadratic.
 */
class MathClosers {
  constructor(text) {
    this.text = text;
    this.found = new Map(); // closer -> {from, at}: the first closer at or after `from`
  }

  next(closer, from) {
    const known = this.found.get(closer);
    if (known && known.from <= from && (known.at >= from || known.at < 0)) return known.at;
    const at = closer === "$" ? this.dollar(from) : this.text.indexOf(closer, from);
    this.found.set(closer, { from, at });
    return at;
  }

  dollar(from) {
    const t = this.text;
    for (let k = t.indexOf("$", from); k >= 0; k = t.indexOf("$", k + 1)) {
      if (/\s/.test(t[k - 1]) || t[k - 1] === "\\" || t[k + 1] === "$") continue;
      if (/[0-9]/.test(t[k + 1] ?? "")) continue;
      return k;
    }
    return -1;
  }

  /** The inline math starting at `i`: {tex, display, end}, or null. */
  at(i) {
    const t = this.text;
    let open;
    let close;
    if (t.startsWith("$$", i)) [open, close] = ["$$", "$$"];
    else if (t[i] === "$") [open, close] = ["$", "$"];
    else if (t.startsWith("\\(", i)) [open, close] = ["\\(", "\\)"];
    else if (t.startsWith("\\[", i)) [open, close] = ["\\[", "\\]"];
    else return null;
    const from = i + open.length;
    if (open === "$" && (/\s/.test(t[from] ?? " ") || t[from] === "$")) return null;
    const k = this.next(close, from);
    if (k < 0 || k - i > SEARCH_LIMIT) return null;
    const tex = t.slice(from, k).trim();
    if (!tex) return null;
    return { tex, display: open === "$$" || open === "\\[", end: k + close.length };
  }
}

/**
 * Renders inline Markdown `text` into `parent`.
 *
 * One left-to-right scan, longer than most functions here on purpose: the constructs share
 * the item list, the bracket stack and the text buffer, and their order in the loop is the
 * precedence CommonMark gives them (escapes and code spans before emphasis and links).
 */
export function renderInline(parent, text) {
  const list = new Inline();
  const brackets = [];
  let buf = "";
  const flush = () => {
    if (buf) list.push({ text: buf });
    buf = "";
  };
  const pushNode = (node) => {
    flush();
    list.push({ node });
  };

  // Code spans: for each backtick run, the next run of the same length (precomputed, so
  // an unclosed run costs O(1) instead of a scan to the end of the text).
  const runs = [];
  for (const m of text.matchAll(/`+/g)) runs.push({ at: m.index, len: m[0].length, next: -1 });
  const lastOfLen = new Map();
  for (let r = runs.length - 1; r >= 0; r--) {
    runs[r].next = lastOfLen.get(runs[r].len) ?? -1;
    lastOfLen.set(runs[r].len, r);
  }
  const runAt = new Map(runs.map((r, k) => [r.at, k]));
  const maths = text.includes("$") || text.includes("\\") ? new MathClosers(text) : null;

  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if ((c === "$" || c === "\\") && maths) {
      const math = maths.at(i);
      if (math) {
        pushNode(mathNode(math.tex, math.display));
        i = math.end;
        continue;
      }
    }
    if (c === "\\") {
      const nx = text[i + 1];
      if (nx === "\n") {
        buf = buf.trimEnd();
        pushNode(el("br"));
        i += 2;
        continue;
      }
      if (nx !== undefined && ASCII_PUNCT.test(nx)) {
        buf += nx;
        i += 2;
        continue;
      }
      buf += c;
      i++;
      continue;
    }
    if (c === "`") {
      const r = runs[runAt.get(i)];
      if (!r) {
        // The rest of a run whose first backtick was escaped: literal.
        while (text[i] === "`") {
          buf += "`";
          i++;
        }
        continue;
      }
      if (r.next >= 0) {
        const close = runs[r.next];
        let body = text.slice(i + r.len, close.at).replace(/\n/g, " ");
        if (body.length > 2 && body[0] === " " && body[body.length - 1] === " " && body.trim()) {
          body = body.slice(1, -1);
        }
        const code = el("code");
        code.textContent = body;
        pushNode(code);
        i = close.at + close.len;
      } else {
        buf += "`".repeat(r.len);
        i += r.len;
      }
      continue;
    }
    if (c === "*" || c === "_" || c === "~") {
      let n = 1;
      while (text[i + n] === c) n++;
      if (c === "~" && n > 2) {
        buf += c.repeat(n);
        i += n;
        continue;
      }
      const f = flanking(text, i, n);
      let canOpen = f.left;
      let canClose = f.right;
      if (c === "_") {
        canOpen = f.left && (!f.right || f.pBefore);
        canClose = f.right && (!f.left || f.pAfter);
      }
      flush();
      list.push({ delim: true, ch: c, n, orig: n, canOpen, canClose });
      i += n;
      continue;
    }
    if (c === "!" && text[i + 1] === "[") {
      flush();
      brackets.push({ item: list.push({ text: "![" }), image: true, active: true });
      i += 2;
      continue;
    }
    if (c === "[") {
      flush();
      brackets.push({ item: list.push({ text: "[" }), image: false, active: true });
      i++;
      continue;
    }
    if (c === "]") {
      const opener = brackets.pop();
      const tail = opener?.active ? parseLinkTail(text, i + 1) : null;
      if (!tail) {
        buf += "]";
        i++;
        continue;
      }
      flush();
      processEmphasis(list, opener.item);
      if (opener.image) {
        const holder = el("span");
        list.drainInto(holder, opener.item);
        const link = makeLink(tail.dest, tail.title);
        link.classList.add("md-image");
        link.textContent = holder.textContent || "image";
        list.remove(opener.item);
        list.push({ node: link });
      } else {
        const link = makeLink(tail.dest, tail.title);
        list.drainInto(link, opener.item);
        // Links do not nest: a bare URL inside link text stays text.
        for (const inner of [...link.querySelectorAll("a")]) inner.replaceWith(...inner.childNodes);
        list.remove(opener.item);
        list.push({ node: link });
        for (const b of brackets) if (!b.image) b.active = false;
      }
      i = tail.end;
      continue;
    }
    if (c === "<") {
      const rest = text.slice(i, i + SEARCH_LIMIT);
      const m = RE_AUTOLINK.exec(rest);
      const mail = m ? null : RE_EMAIL_AUTOLINK.exec(rest);
      const href = m ? m[1] : mail ? "mailto:" + mail[1] : null;
      if (href && safeHref(href)) {
        const a = makeLink(href, null);
        a.textContent = (m || mail)[1];
        pushNode(a);
        i += (m || mail)[0].length;
        continue;
      }
      buf += c;
      i++;
      continue;
    }
    if (c === "&") {
      const ent = decodeEntity(text, i);
      if (ent) {
        buf += ent.text;
        i += ent.len;
        continue;
      }
    }
    if ((c === "h" || c === "H" || c === "w" || c === "W") && (i === 0 || /[\s*_~(]/.test(text[i - 1]))) {
      const bare = bareUrlAt(text, i);
      if (bare) {
        const a = makeLink(bare.href, null);
        a.textContent = bare.url;
        pushNode(a);
        i += bare.url.length;
        continue;
      }
    }
    if (c === "\n") {
      const hard = / {2,}$/.test(buf);
      buf = buf.trimEnd();
      if (hard) pushNode(el("br"));
      else buf += "\n";
      i++;
      while (text[i] === " ") i++;
      continue;
    }
    buf += c;
    i++;
  }
  flush();
  processEmphasis(list, null);
  list.drainInto(parent, list.head);
  parent.normalize();
}

function lengthsMatch(opener, closer) {
  if (closer.ch === "~") return opener.n === closer.n;
  if ((opener.canClose || closer.canOpen) && (opener.orig + closer.orig) % 3 === 0) {
    return opener.orig % 3 === 0 && closer.orig % 3 === 0;
  }
  return true;
}

/** CommonMark's "process emphasis", over the items after `bottom` (null: all). */
function processEmphasis(list, bottom) {
  const floor = bottom ?? list.head;
  const openersBottom = new Map();
  let closer = floor.next;
  while (closer) {
    if (!closer.delim || !closer.canClose) {
      closer = closer.next;
      continue;
    }
    const key = closer.ch + (closer.canOpen ? "1" : "0") + (closer.orig % 3);
    const stop = openersBottom.get(key);
    let opener = null;
    for (let o = closer.prev; o && o !== floor && o !== stop; o = o.prev) {
      if (o.delim && o.ch === closer.ch && o.canOpen && lengthsMatch(o, closer)) {
        opener = o;
        break;
      }
    }
    if (!opener) {
      openersBottom.set(key, closer.prev);
      const next = closer.next;
      if (!closer.canOpen) {
        closer.delim = false;
        closer.text = closer.ch.repeat(closer.n);
      }
      closer = next;
      continue;
    }
    const use = closer.ch === "~" ? closer.n : closer.n >= 2 && opener.n >= 2 ? 2 : 1;
    const tag = closer.ch === "~" ? "del" : use === 2 ? "strong" : "em";
    const wrap = el(tag);
    list.drainInto(wrap, opener, closer);
    list.insertAfter(opener, { node: wrap });
    opener.n -= use;
    closer.n -= use;
    if (opener.n === 0) list.remove(opener);
    if (closer.n === 0) {
      const next = closer.next;
      list.remove(closer);
      closer = next;
    }
  }
}
