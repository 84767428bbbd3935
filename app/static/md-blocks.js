/**
 * The block level of the Markdown renderer: a line-by-line parser that turns lines into
 * blocks ("units": paragraph, heading, code, math, quote, list item, table, rule) and hands each
 * finished one to a sink exactly once. Pure: no DOM here. Nested quotes and list items
 * keep their inner lines; the sink renders those with a parser of their own.
 */

const MAX_DEPTH = 12; // nested quotes/lists beyond this render as text

export const RE_BLANK = /^[ \t]*$/;
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
export const RE_PURE_MARKUP = /^[ \t]*[-=*_`~#>|+:]*[ \t]*$/;

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

export function stripIndent(line, n) {
  const k = Math.min(n, indentOf(line));
  return line.slice(k);
}

function openFence(line) {
  const m = RE_FENCE.exec(line);
  if (!m || (m[2][0] === "`" && m[3].includes("`"))) return null;
  return { indent: m[1].length, ch: m[2][0], len: m[2].length, info: m[3] };
}

/**
 * A display-math opener: `$$` or `\[` starting a line. `{close, rest, single}`, or null when
 * the line is a paragraph after all (the closer comes before the end: `$$a$$ and text`).
 */
function openMath(line) {
  const m = /^ {0,3}(\$\$|\\\[)(.*)$/.exec(line);
  if (!m) return null;
  const close = m[1] === "$$" ? "$$" : "\\]";
  const rest = m[2].trim();
  const at = rest.indexOf(close);
  if (at < 0) return { close, rest, single: false };
  if (at !== rest.length - close.length || !rest.slice(0, at).trim()) return null;
  return { close, rest: rest.slice(0, at), single: true };
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
export class BlockParser {
  constructor(sink, depth) {
    this.sink = sink;
    this.depth = depth;
    this.cur = null;
  }

  feed(rawLine) {
    const plain = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    const line = expandTabs(plain); // tabs count as 4-column stops for structure only
    const u = this.cur;
    if (u?.type === "math") {
      this.continueMath(u, plain);
      return;
    }
    if (u?.type === "code") {
      u.raw.push(plain);
      if (closesFence(u.fence, line)) {
        u.closed = true;
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

  /**
   * A line of an open display-math block. A blank line ends the block unclosed (shown as
   * its source): a stray `$$` cannot swallow the rest of the answer.
   */
  continueMath(u, line) {
    if (RE_BLANK.test(line)) {
      this.emit();
      return;
    }
    u.raw.push(line);
    const text = line.trimEnd();
    if (text.endsWith(u.close)) {
      u.lines.push(text.slice(0, -u.close.length));
      u.closed = true;
      this.emit();
      return;
    }
    u.lines.push(line);
  }

  /** Whether `line` starts a block that may interrupt a paragraph. */
  interrupts(line) {
    if (openFence(line) || openMath(line) || RE_ATX.test(line) || RE_HR.test(line)) return true;
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
    const math = openMath(line);
    if (math) {
      const unit = { type: "math", close: math.close, lines: [], raw: [line], closed: math.single };
      if (math.rest) unit.lines.push(math.rest);
      if (math.single) this.sink.add(unit);
      else this.cur = unit;
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
