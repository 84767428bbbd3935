/**
 * Safe, progressive Markdown rendering for model output (CommonMark subset plus GFM
 * tables and ~~strikethrough~~).
 *
 * Safety rules, enforced in this file and nowhere else:
 * - The DOM is built with createElement / createTextNode only. Model text never reaches
 *   innerHTML or any other HTML parser, event-handler attributes or style.
 * - Raw HTML in the source is shown as text.
 * - Links keep only absolute http:, https: and mailto: URLs (checked with the URL parser,
 *   so "java\tscript:" and friends are refused); anything else renders as plain text.
 * - Images are never loaded: a remote image leaks data through its URL the moment it is
 *   fetched. They are shown as a link labelled with their alt text.
 *
 * Streaming rules (MarkdownStream): text is parsed line by line; a finished block is
 * rendered once, appended, and never touched again. Each chunk re-renders only the
 * trailing open block, and an open fenced code block is appended to in place, so the cost
 * of a chunk depends on that block, not on the length of the answer.
 */

const MAX_DEPTH = 12; // nested quotes/lists beyond this render as text
const SEARCH_LIMIT = 4096; // how far an inline construct looks ahead for its end

const RE_BLANK = /^[ \t]*$/;
const RE_FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*(.*?)[ \t]*$/;
const RE_ATX = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$/;
const RE_HR = /^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$/;
const RE_QUOTE = /^ {0,3}> ?/;
const RE_BULLET = /^( {0,3})([-+*])(?=[ \t]|$)([ \t]*)(.*)$/;
const RE_ORDERED = /^( {0,3})(\d{1,9})([.)])(?=[ \t]|$)([ \t]*)(.*)$/;
const RE_SETEXT = /^ {0,3}(?:=+|-+)[ \t]*$/;
const RE_DELIM_ROW = /^ {0,3}\|?(?:[ \t]*:?-+:?[ \t]*\|)*[ \t]*:?-+:?[ \t]*\|?[ \t]*$/;
// A partial last line made only of markup characters says nothing yet ("-", "##", "```"):
// previewing it would flash the wrong block (a paragraph turning into a heading).
const RE_PURE_MARKUP = /^[ \t]*[-=*_`~#>|+:]*[ \t]*$/;

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

function expandTabs(line) {
  if (!line.includes("\t")) return line;
  let out = "";
  let col = 0;
  let i = 0;
  for (; i < line.length; i++) {
    const c = line[i];
    if (c === " ") {
      out += " ";
      col += 1;
    } else if (c === "\t") {
      const n = 4 - (col % 4);
      out += " ".repeat(n);
      col += n;
    } else break;
  }
  return out + line.slice(i);
}

function indentOf(line) {
  let n = 0;
  while (line.charCodeAt(n) === 32) n++;
  return n;
}

function stripIndent(line, n) {
  const k = Math.min(n, indentOf(line));
  return line.slice(k);
}

function openFence(line) {
  const m = RE_FENCE.exec(line);
  if (!m || (m[2][0] === "`" && m[3].includes("`"))) return null;
  return { indent: m[1].length, ch: m[2][0], len: m[2].length, info: m[3] };
}

function closesFence(fence, line) {
  const m = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(line);
  return !!m && m[1][0] === fence.ch && m[1].length >= fence.len;
}

function matchItem(line) {
  let m = RE_BULLET.exec(line);
  let ordered = false;
  let width;
  let key;
  let start = 1;
  let spaces;
  let rest;
  if (m) {
    width = 1;
    key = "u" + m[2];
    spaces = m[3];
    rest = m[4];
  } else {
    m = RE_ORDERED.exec(line);
    if (!m) return null;
    ordered = true;
    width = m[2].length + 1;
    key = "o" + m[3];
    start = parseInt(m[2], 10);
    spaces = m[4];
    rest = m[5];
  }
  const indent = m[1].length;
  const contentIndent =
    rest === "" || spaces.length >= 5 ? indent + width + 1 : indent + width + spaces.length;
  return { ordered, key, start, contentIndent, first: rest };
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  const cells = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\" && s[i + 1] === "|") {
      cur += "\\|";
      i++;
    } else if (c === "|") {
      cells.push(cur.trim());
      cur = "";
    } else cur += c;
  }
  if (cur.trim() !== "" || !s.endsWith("|")) cells.push(cur.trim());
  return cells;
}

function alignOf(cell) {
  const left = cell.startsWith(":");
  const right = cell.endsWith(":");
  if (left && right) return "center";
  if (right) return "right";
  if (left) return "left";
  return "";
}

const TAKEN = 1; // the line belongs to the open block
const CLOSED = 2; // the line belongs to the open block and ends it
const REJECTED = 3; // the line does not belong: the open block ends before it

/**
 * Line-by-line block parser. Blocks are plain objects ("units"); a finished unit goes to
 * the sink exactly once. Only `cur`, the open unit, may still change.
 */
class BlockParser {
  constructor(sink, depth) {
    this.sink = sink;
    this.depth = depth;
    this.cur = null;
  }

  feed(rawLine) {
    const plain = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    const line = expandTabs(plain); // tabs count as 4-column stops for structure only
    const u = this.cur;
    if (u?.type === "code") {
      u.raw.push(plain);
      if (closesFence(u.fence, line)) {
        this.emit();
        return;
      }
      u.lines.push(stripIndent(plain, u.fence.indent)); // code keeps its tabs
      this.sink.grow?.(u, u.lines[u.lines.length - 1]);
      return;
    }
    if (this.cur) {
      const r = this.continueUnit(this.cur, line);
      if (r === TAKEN) return;
      this.emit();
      if (r === CLOSED) return;
    }
    if (!RE_BLANK.test(line)) this.start(line);
  }

  finish() {
    if (this.cur) this.emit();
  }

  emit() {
    const u = this.cur;
    this.cur = null;
    if (u.type === "item" || u.type === "quote") {
      while (u.lines.length && RE_BLANK.test(u.lines[u.lines.length - 1])) u.lines.pop();
    }
    this.sink.add(u);
  }

  nests() {
    return this.depth < MAX_DEPTH;
  }

  /** Whether `line` starts a block that may interrupt a paragraph. */
  interrupts(line) {
    if (openFence(line) || RE_ATX.test(line) || RE_HR.test(line)) return true;
    if (!this.nests()) return false;
    if (RE_QUOTE.test(line)) return true;
    const item = matchItem(line);
    return !!item && item.first !== "" && (!item.ordered || item.start === 1);
  }

  start(line) {
    const fence = openFence(line);
    if (fence) {
      this.cur = { type: "code", fence, lines: [], raw: [line] };
      this.sink.open?.(this.cur);
      return;
    }
    const atx = RE_ATX.exec(line);
    if (atx) {
      const text = (atx[2] || "").replace(/(?:^|[ \t]+)#+$/, "");
      this.sink.add({ type: "heading", level: atx[1].length, text, raw: [line] });
      return;
    }
    if (RE_HR.test(line)) {
      this.sink.add({ type: "hr", raw: [line] });
      return;
    }
    if (this.nests() && RE_QUOTE.test(line)) {
      this.cur = { type: "quote", lines: [], raw: [], fence: null };
      this.pushInner(this.cur, line.replace(RE_QUOTE, ""), line);
      return;
    }
    const item = this.nests() ? matchItem(line) : null;
    if (item) {
      this.cur = { type: "item", ...item, lines: [], raw: [], fence: null };
      this.pushInner(this.cur, item.first, line);
      return;
    }
    this.cur = { type: "para", lines: [line.trimStart()], raw: [line] };
  }

  /** Adds a line to a container (quote, list item), tracking fences inside it. */
  pushInner(u, inner, raw) {
    u.lines.push(inner);
    u.raw.push(raw);
    if (u.fence) {
      if (closesFence(u.fence, inner)) u.fence = null;
    } else {
      u.fence = openFence(inner);
    }
  }

  /** A lazy continuation line: plain text continuing a container's last paragraph. */
  lazy(u, line) {
    const last = u.lines[u.lines.length - 1];
    return !u.fence && last !== undefined && !RE_BLANK.test(last) && !this.interrupts(line);
  }

  continueUnit(u, line) {
    const blank = RE_BLANK.test(line);
    switch (u.type) {
      case "para":
        return this.continuePara(u, line, blank);
      case "quote":
        if (RE_QUOTE.test(line)) {
          this.pushInner(u, line.replace(RE_QUOTE, ""), line);
          return TAKEN;
        }
        if (!blank && this.lazy(u, line)) {
          this.pushInner(u, line.trimStart(), line);
          return TAKEN;
        }
        return REJECTED;
      case "item":
        if (blank) {
          this.pushInner(u, "", line);
          return TAKEN;
        }
        if (indentOf(line) >= u.contentIndent) {
          this.pushInner(u, line.slice(u.contentIndent), line);
          return TAKEN;
        }
        if (this.lazy(u, line) && !matchItem(line)) {
          this.pushInner(u, line.trimStart(), line);
          return TAKEN;
        }
        return REJECTED;
      case "table":
        if (blank || !line.includes("|") || this.interrupts(line)) return REJECTED;
        u.rows.push(splitRow(line));
        u.raw.push(line);
        return TAKEN;
      default:
        return REJECTED;
    }
  }

  continuePara(u, line, blank) {
    if (blank) return REJECTED;
    if (RE_SETEXT.test(line)) {
      u.type = "heading";
      u.level = line.trim()[0] === "=" ? 1 : 2;
      u.text = u.lines.join("\n").trim();
      u.raw.push(line);
      return CLOSED;
    }
    const last = u.lines[u.lines.length - 1];
    if (line.includes("|") && RE_DELIM_ROW.test(line) && last.includes("|")) {
      const head = splitRow(last);
      const delims = splitRow(line);
      if (head.length === delims.length) {
        u.lines.pop();
        const headRaw = u.raw.pop();
        if (u.lines.length) this.emit();
        this.cur = { type: "table", head, aligns: delims.map(alignOf), rows: [], raw: [headRaw, line] };
        return TAKEN;
      }
    }
    if (this.interrupts(line)) return REJECTED;
    u.lines.push(line.trimStart());
    u.raw.push(line);
    return TAKEN;
  }
}

/** Renders finished units into a parent, grouping consecutive list items into one list. */
class DomSink {
  constructor(parent, depth, list = null) {
    this.parent = parent;
    this.depth = depth;
    this.list = list; // {key, node}: the list the next compatible item joins
    this.added = null; // when set, every node this sink inserts is recorded here
  }

  put(node, into = this.parent) {
    into.append(node);
    this.added?.push(node);
  }

  add(u) {
    if (u.type === "item") {
      if (!this.list || this.list.key !== u.key) {
        const list = el(u.ordered ? "ol" : "ul");
        if (u.ordered && u.start !== 1) list.start = u.start;
        this.put(list);
        this.list = { key: u.key, node: list };
      }
      this.put(renderItem(u, this.depth), this.list.node);
      return;
    }
    this.list = null;
    if (u.view) u.view.tail.data = ""; // shown in place while open; drop the partial-line preview
    else this.put(renderUnit(u, this.depth));
  }
}

/** The sink of a stream: also shows an open fenced code block and appends to it in place. */
class StreamSink extends DomSink {
  open(u) {
    this.list = null;
    u.view = codeView(u.fence.info);
    this.parent.append(u.view.root);
  }

  grow(u, line) {
    if (u.view) {
      u.view.body.appendData((u.view.lines ? "\n" : "") + line);
      u.view.lines += 1;
    }
  }
}

function codeView(info) {
  const root = el("div", "md-code");
  const head = el("div", "md-code-head");
  const lang = el("span", "md-code-lang");
  lang.textContent = info.split(/\s/, 1)[0];
  const copy = el("button", "md-code-copy");
  copy.type = "button";
  copy.textContent = "Copy";
  head.append(lang, copy);
  const pre = el("pre");
  const code = el("code");
  const body = document.createTextNode("");
  const tail = document.createTextNode("");
  code.append(body, tail);
  pre.append(code);
  root.append(head, pre);
  return { root, body, tail, lines: 0 };
}

function renderUnit(u, depth) {
  switch (u.type) {
    case "heading": {
      const h = el("h" + u.level);
      renderInline(h, u.text);
      return h;
    }
    case "hr":
      return el("hr");
    case "code": {
      const view = codeView(u.fence.info);
      view.body.data = u.lines.join("\n");
      return view.root;
    }
    case "quote": {
      const q = el("blockquote");
      renderBlocks(q, u.lines, depth + 1);
      return q;
    }
    case "table":
      return renderTable(u);
    default: {
      const p = el("p");
      renderInline(p, u.lines.join("\n").trimEnd());
      return p;
    }
  }
}

function renderItem(u, depth) {
  const li = el("li");
  renderBlocks(li, u.lines, depth + 1);
  // A tight item (no blank line inside) shows its paragraphs without <p>, as CommonMark does.
  if (!u.lines.some((l) => RE_BLANK.test(l))) {
    for (const child of [...li.children]) {
      if (child.tagName === "P") child.replaceWith(...child.childNodes);
    }
  }
  return li;
}

function renderTable(u) {
  const wrap = el("div", "md-table");
  const table = el("table");
  const thead = el("thead");
  const tbody = el("tbody");
  const row = (cells, tag) => {
    const tr = el("tr");
    u.head.forEach((_, i) => {
      const cell = el(tag);
      if (u.aligns[i]) cell.className = "al-" + u.aligns[i];
      renderInline(cell, cells[i] ?? "");
      tr.append(cell);
    });
    return tr;
  };
  thead.append(row(u.head, "th"));
  for (const r of u.rows) tbody.append(row(r, "td"));
  table.append(thead, tbody);
  wrap.append(table);
  return wrap;
}

function renderBlocks(parent, lines, depth) {
  const parser = new BlockParser(new DomSink(parent, depth), depth);
  for (const line of lines) parser.feed(line);
  parser.finish();
}

/** Renders a whole Markdown text; returns a DocumentFragment. */
export function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  const lines = String(text).split("\n");
  if (lines[lines.length - 1] === "") lines.pop(); // a final newline ends a line, adds none
  renderBlocks(frag, lines, 0);
  return frag;
}

/**
 * Renders Markdown that arrives in chunks into `root`.
 *
 * push(chunk) appends text; end() closes every open block. Complete lines go through the
 * block parser once; finished blocks are frozen in the DOM. The open block (and the partial
 * last line) is drawn as a preview that the next chunk replaces.
 */
export class MarkdownStream {
  constructor(root) {
    this.root = root;
    this.sink = new StreamSink(root, 0);
    this.parser = new BlockParser(this.sink, 0);
    this.partial = "";
    this.preview = [];
    this.ended = false;
  }

  push(chunk) {
    if (!chunk || this.ended) return;
    this.clearPreview();
    const nl = chunk.lastIndexOf("\n");
    if (nl < 0) {
      this.partial += chunk;
    } else {
      const complete = this.partial + chunk.slice(0, nl);
      this.partial = chunk.slice(nl + 1);
      for (const line of complete.split("\n")) this.parser.feed(line);
    }
    this.drawPreview();
  }

  end() {
    if (this.ended) return;
    this.clearPreview();
    if (this.partial) this.parser.feed(this.partial);
    this.partial = "";
    this.parser.finish();
    this.ended = true;
  }

  clearPreview() {
    for (const node of this.preview) node.remove();
    this.preview.length = 0;
  }

  drawPreview() {
    const u = this.parser.cur;
    const partial = this.partial.endsWith("\r") ? this.partial.slice(0, -1) : this.partial;
    const held = RE_PURE_MARKUP.test(partial); // may yet be a closing fence, a marker…
    if (u?.view) {
      const shown = stripIndent(partial, u.fence.indent);
      u.view.tail.data = held ? "" : (u.view.lines ? "\n" : "") + shown;
      return;
    }
    const lines = u ? u.raw.slice() : [];
    if (!held) lines.push(partial);
    if (!lines.length) return;
    const sink = new DomSink(this.root, 0, this.sink.list);
    sink.added = this.preview;
    const parser = new BlockParser(sink, 0);
    for (const line of lines) parser.feed(line);
    parser.finish();
  }
}

/* Inline content: a doubly linked list of items, then CommonMark's delimiter algorithm. */

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

/** Renders inline Markdown `text` into `parent`. */
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

  let i = 0;
  while (i < text.length) {
    const c = text[i];
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
