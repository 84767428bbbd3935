/**
 * Safe, progressive Markdown rendering for model output: a CommonMark subset plus GFM
 * (tables, task lists, ~~strikethrough~~, autolinks), math (`$…$`, `$$…$$`, `\(…\)`,
 * `\[…\]`, by KaTeX as MathML, md-math.js) and highlighted code (Prism, md-code.js).
 *
 * Safety rules, enforced here and in md-inline.js, nowhere else:
 * - The DOM is built with createElement / createTextNode only. Model text never reaches
 *   innerHTML or any other HTML parser, event-handler attributes or style. The libraries
 *   used keep to that: KaTeX builds MathML nodes itself, Prism only tokenizes.
 * - Raw HTML in the source is shown as text.
 * - Links keep only absolute http:, https: and mailto: URLs (checked with the URL parser,
 *   so "java\tscript:" and friends are refused); anything else renders as plain text.
 * - Images are never loaded: a remote image leaks data through its URL the moment it is
 *   fetched. They are shown as a link labelled with their alt text.
 *
 * Streaming rules (MarkdownStream): text is parsed line by line; a finished block is
 * rendered once, appended, and never touched again. Each chunk re-renders only the
 * trailing open block, and an open fenced code block is appended to in place, so the cost
 * of a chunk depends on that block, not on the length of the answer. A code block is
 * highlighted, and a display formula typeset, once it is closed; until then they show
 * their source.
 */

import { BlockParser, RE_BLANK, RE_PURE_MARKUP, stripIndent } from "./md-blocks.js";
import { highlightInto } from "./md-code.js";
import { renderInline, safeHref } from "./md-inline.js";
import { mathNode } from "./md-math.js";
import { patch } from "./md-patch.js";

export { renderInline, safeHref };

// A partial line with a word after its first (so past any block marker: an empty list item
// can not interrupt a paragraph, a filled one can) and ending in a letter, digit or space:
// text added to it cannot turn it into another kind of block, close a delimiter run or
// extend a link before it.
const RE_PAST_MARKER = /\S[ \t]+\S/;
const RE_PLAIN_END = /[\p{L}\p{N} \t]$/u;
// Plain words: none of the characters that start or end an inline construct or a block.
const RE_PLAIN = /^[^*_~`[\]()<>&!\\$|#=+:;\r-]*$/;

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** Renders finished units into a parent, grouping consecutive list items into one list. */
class DomSink {
  constructor(parent, depth, list = null) {
    this.parent = parent;
    this.depth = depth;
    this.list = list; // {key, node}: the list the next compatible item joins
    this.outside = list?.node; // a list already in the DOM that items may join
    this.held = null; // when set, nodes bound for the DOM are recorded as [node, into]
  }

  put(node, into = this.parent) {
    if (this.held && (into === this.parent || into === this.outside)) this.held.push([node, into]);
    else into.append(node);
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
    if (!u.view) this.put(renderUnit(u, this.depth));
    else if (u.closed) highlightInto(u.view.code, u.fence.info, u.lines.join("\n"));
    else u.view.tail.data = ""; // shown in place while open; drop the partial-line preview
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
  return { root, code, body, tail, lines: 0 };
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
      if (u.closed) highlightInto(view.code, u.fence.info, u.lines.join("\n"));
      else view.body.data = u.lines.join("\n");
      return view.root;
    }
    case "math": {
      if (u.closed) {
        const box = el("div", "md-math-block");
        box.append(mathNode(u.lines.join("\n").trim(), true));
        return box;
      }
      const src = el("p", "md-math-source"); // not closed (yet): the TeX as written
      src.textContent = u.raw.join("\n");
      return src;
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

const RE_TASK = /^\[([ xX])\](?=[ \t]|$)[ \t]*/;

function renderItem(u, depth) {
  const li = el("li");
  // A GFM task item: "- [ ] text" / "- [x] text" shows a checkbox the reader cannot change.
  const task = RE_TASK.exec(u.lines[0]);
  const lines = task ? [u.lines[0].slice(task[0].length), ...u.lines.slice(1)] : u.lines;
  renderBlocks(li, lines, depth + 1);
  // A tight item (no blank line inside) shows its paragraphs without <p>, as CommonMark does.
  if (!u.lines.some((l) => RE_BLANK.test(l))) {
    for (const child of [...li.children]) {
      if (child.tagName === "P") child.replaceWith(...child.childNodes);
    }
  }
  if (task) {
    const box = el("input", "md-task-box");
    box.type = "checkbox";
    box.disabled = true;
    box.defaultChecked = task[1] !== " ";
    li.className = "md-task";
    const first = li.firstChild?.nodeName === "P" ? li.firstChild : li;
    first.prepend(box, document.createTextNode(" "));
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
    this.preview = []; // [node, parent] of what the preview put in the DOM
    this.ended = false;
  }

  push(chunk) {
    if (!chunk || this.ended) return;
    const nl = chunk.lastIndexOf("\n");
    if (nl < 0) {
      // The same block, grown: its last text grows in place where the chunk is plain
      // words, else the preview drawn is patched rather than replaced.
      const before = this.partial;
      this.partial += chunk;
      if (!this.growText(before, chunk)) this.drawPreview(true);
      return;
    }
    // Lines end, so blocks may finish: they go in after what is final, before any preview.
    this.clearPreview();
    const complete = this.partial + chunk.slice(0, nl);
    this.partial = chunk.slice(nl + 1);
    for (const line of complete.split("\n")) this.parser.feed(line);
    this.drawPreview(false);
  }

  end() {
    if (this.ended) return;
    this.clearPreview();
    if (this.partial) this.parser.feed(this.partial);
    this.partial = "";
    this.parser.finish();
    this.ended = true;
  }

  /**
   * Appends a chunk of plain words to the text node that ends the drawn preview, when that
   * is all rendering the grown line anew would change; returns whether it did. Rendering
   * anew builds a fresh subtree of the block (a clone of each formula in it) for every
   * chunk only to find one text node grown: garbage the collector then has to trace along
   * with the whole page. The preview must end in the partial line's own text, in a
   * paragraph or list item; the line must be past its block marker and end in a letter,
   * digit or space, so no delimiter, link or marker before the chunk can change meaning;
   * and the chunk must hold no character that starts or ends an inline construct.
   */
  growText(before, chunk) {
    const shown = before.trimEnd();
    if (!this.preview.length || this.parser.cur?.view || !RE_PLAIN_END.test(before)
        || !RE_PAST_MARKER.test(shown) || RE_PURE_MARKUP.test(before) || !RE_PLAIN.test(chunk)
        || /www\./i.test(before.slice(-3) + chunk)) return false;
    let node = this.preview[this.preview.length - 1][0];
    while (node.lastChild) node = node.lastChild;
    const block = node.parentNode;
    if (node.nodeType !== Node.TEXT_NODE || !(block.nodeName === "LI"
        || (block.nodeName === "P" && !block.className))) return false;
    const lastWord = shown.slice(Math.max(shown.lastIndexOf(" "), shown.lastIndexOf("\t")) + 1);
    // Digits then a dot may be an ordered list's marker, where the line's text starts a list
    // item's or a quote's content: "- 1" and ". x".
    if (!node.data.endsWith(lastWord) || (/^\d+$/.test(lastWord) && chunk.includes("."))) {
      return false;
    }
    // A block's text is shown without its trailing spaces: they go in with the chunk.
    const grown = (before.slice(shown.length) + chunk).trimEnd();
    if (grown) node.appendData(grown);
    return true;
  }

  clearPreview() {
    for (const [node] of this.preview) node.remove();
    this.preview = [];
  }

  /** Draws the open block and the partial line; `patchable`: over the preview drawn before. */
  drawPreview(patchable) {
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
    const sink = new DomSink(this.root, 0, this.sink.list);
    sink.held = [];
    const parser = new BlockParser(sink, 0);
    for (const line of lines) parser.feed(line);
    parser.finish();
    const next = sink.held;
    const old = this.preview;
    if (patchable && old.length === next.length && old.every(([, into], i) => into === next[i][1])) {
      this.preview = old.map(([node, into], i) => [patch(node, next[i][0]), into]);
      return;
    }
    this.clearPreview();
    for (const [node, into] of next) into.append(node);
    this.preview = next;
  }
}
