"""The page's two possible renderers, measured on the same answers in headless Chromium.

- ``ours``: app/static/markdown.js (our parser, incremental by construction) with KaTeX
  (MathML) and Prism's tokenizer, as the page ships it.
- ``libs``: markdown-it 15 with markdown-it-texmath (KaTeX) and Prism for code, its HTML
  cleaned by DOMPurify, fed incrementally the way such a page would be: per chunk only the
  text from the start of markdown-it's last top-level block is rendered again; the blocks
  before it are rendered once and stay.

Figures: the time of one chunk (a word) at the start and at the end of a long answer (the
answer of bench/page.py, 30 times over), p50 and p99: the renderer's own time, and apart
from it the style and layout that the chunk causes (forced by reading offsetHeight); the
hostile inputs of the renderer's tests (anything that could run, a link that is not
http(s)/mailto, an image that would load); and the CommonMark spec's examples, whole and
the ones that apply to a renderer that refuses raw HTML, relative links and images.

Run: ``python -m bench.markdown`` (about a minute); writes ``bench/markdown.json``. Needs
``scripts/web-packages`` (npm ci) first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.page import ANSWER
from bench.procs import ROOT

CHROMIUM = os.environ.get("CHORUS_CHROMIUM", "/usr/bin/chromium")
ORIGIN = "http://renderers.test"
SECTIONS = 30  # the long answer: this many copies of the bench.page answer
EDGE = 400  # chunks measured at each end
SKIP_SECTIONS = {"HTML blocks", "Raw HTML"}  # raw HTML is shown as text, on purpose
RE_HREF = re.compile(r'href="([^"]*)"')

HOSTILE = [
    "<img src=x onerror=window.__pwned=1>",
    "<script>window.__pwned=1</script>",
    "<svg/onload=window.__pwned=1>",
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    '<a href="javascript:window.__pwned=1">raw</a>',
    "[a](javascript:window.__pwned=1) [b](JaVaScRiPt:alert(1)) [c](vbscript:x)",
    "[d](&#106;avascript:alert(1)) [g](data:text/html;base64,PHNjcmlwdD4=) [h](file:///x)",
    "![y](https://tracker.example/p.gif?secret=1)",
    '[t](https://ok.example "<img src=x onerror=window.__pwned=1>")',
    "| <img src=x onerror=window.__pwned=1> | b |\n|---|---|\n| [a](javascript:x) | b |",
    "```html\n<script>window.__pwned=1</script>\n```",
    "$\\href{javascript:window.__pwned=1}{x}$ $\\includegraphics{https://tracker.example/a.png}$",
    "\\(<img src=x onerror=window.__pwned=1>\\)",
    "<details open ontoggle=window.__pwned=1>x</details>",
]

PAGE = """<!doctype html><title>renderers</title><body>
<script src="/nm/markdown-it/dist/browser/markdown-it.umd.min.js"></script>
<script src="/nm/markdown-it-texmath/texmath.js"></script>
</body>"""

SETUP = r"""
async () => {
  const ours = await import('/static/markdown.js');
  const katex = (await import('/nm/katex/dist/katex.mjs')).default;
  const DOMPurify = (await import('/nm/dompurify/dist/purify.es.mjs')).default;
  const Prism = (await import('/static/vendor/prism.js')).default;
  const mdit = window.markdownit({
    html: false, linkify: true,
    highlight: (code, lang) => {
      const g = Prism.languages[lang];
      return g && typeof g === 'object' ? Prism.highlight(code, g, lang) : '';
    },
  }).use(window.texmath, {engine: katex, delimiters: ['dollars', 'brackets'],
                           katexOptions: {throwOnError: false, trust: false}});
  const clean = (html) => DOMPurify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true, FORBID_TAGS: ['img', 'style', 'form', 'input'],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i});

  /** markdown-it, incremental: only the last top-level block is rendered again. */
  class LibStream {
    constructor(root) {
      this.root = root; this.text = ''; this.done = 0;
      this.tail = document.createElement('div'); root.append(this.tail);
    }
    push(chunk) {
      this.text += chunk;
      const src = this.text.slice(this.done);
      const tokens = mdit.parse(src, {});
      const starts = tokens.filter((t) => t.level === 0 && t.nesting !== -1 && t.map)
        .map((t) => t.map[0]);
      const last = starts[starts.length - 1] ?? 0;
      if (last > 0) {
        const lines = src.split('\n');
        const head = lines.slice(0, last).join('\n') + '\n';
        this.tail.before(clean(mdit.render(head)));
        this.done += head.length;
      }
      this.tail.replaceChildren(clean(mdit.render(this.text.slice(this.done))));
    }
  }
  window.R = {
    ours: {stream: (root) => new ours.MarkdownStream(root),
           whole: (text) => ours.renderMarkdown(text)},
    libs: {stream: (root) => new LibStream(root),
           whole: (text) => clean(mdit.render(text))},
  };
}
"""

TIMING = r"""
async ([name, text, edge]) => {
  const words = text.match(/\S+\s*|\s+/g);
  const box = document.createElement('div');
  document.body.append(box);
  const s = R[name].stream(box);
  const render = [], layout = [];
  for (const w of words) {
    const t0 = performance.now();
    s.push(w);
    const t1 = performance.now();
    void box.offsetHeight;  // the style and layout the chunk causes, apart
    render.push(t1 - t0);
    layout.push(performance.now() - t1);
  }
  box.remove();
  const q = (a, p) => { const b = [...a].sort((x, y) => x - y);
                        return b[Math.min(b.length - 1, Math.ceil(p / 100 * b.length) - 1)]; };
  const out = {chunks: words.length};
  for (const [key, times] of [['render', render], ['layout', layout]]) {
    const head = times.slice(0, edge), tail = times.slice(-edge);
    Object.assign(out, {[key + '_start_p50_ms']: q(head, 50), [key + '_start_p99_ms']: q(head, 99),
                        [key + '_end_p50_ms']: q(tail, 50), [key + '_end_p99_ms']: q(tail, 99),
                        [key + '_total_ms']: times.reduce((a, b) => a + b, 0)});
  }
  return out;
}
"""

SAFETY = r"""
async ([name, texts]) => {
  const bad = [];
  window.__pwned = undefined;
  for (const text of texts) {
    const box = document.createElement('div');
    document.body.append(box);
    box.append(R[name].whole(text));
    for (const n of box.querySelectorAll('*')) {
      const tag = n.localName;
      if (['script', 'iframe', 'object', 'embed', 'style', 'form', 'details'].includes(tag)) {
        bad.push(text + ' -> <' + tag + '>');
      }
      if (tag === 'img' || tag === 'image') bad.push(text + ' -> an image that loads');
      for (const a of n.attributes) {
        if (a.name.startsWith('on')) bad.push(text + ' -> @' + a.name);
        if (['href', 'src', 'xlink:href', 'action'].includes(a.name) &&
            !/^(?:https?:|mailto:)/i.test(a.value)) bad.push(text + ' -> ' + a.value);
      }
    }
  }
  await new Promise((r) => setTimeout(r, 200));
  if (window.__pwned !== undefined) bad.push('script ran');
  return bad;
}
"""

SPEC = r"""
async ([name, examples]) => {
  const norm = (node) => {
    for (const wrap of node.querySelectorAll('.md-code, .md-table')) {
      wrap.replaceWith(wrap.querySelector('pre, table'));
    }
    for (const el of node.querySelectorAll('*')) {
      for (const a of ['class', 'target', 'rel', 'referrerpolicy']) el.removeAttribute(a);
    }
    for (const code of node.querySelectorAll('pre > code')) {
      code.textContent = code.textContent.replace(/\n$/, '');
    }
    // Links compare by the URL they lead to (ours keeps the URL parser's form).
    for (const a of node.querySelectorAll('a[href]')) {
      try { a.setAttribute('href', new URL(a.getAttribute('href')).href); } catch {}
    }
    // As CommonMark's own test normalizer does: whitespace next to a block tag (or a line
    // break) is not drawn, so it does not count.
    return node.innerHTML.replace(BLOCK, '$1').trim();
  };
  const TAGS = 'p|li|ul|ol|blockquote|pre|h[1-6]|hr|table|thead|tbody|tr|th|td|br';
  const BLOCK = new RegExp('\\s*(</?(?:' + TAGS + ')\\b[^>]*>)\\s*', 'g');
  const passed = [];
  for (const ex of examples) {
    const want = document.createElement('template');
    want.innerHTML = ex.html;
    const got = document.createElement('div');
    try { got.append(R[name].whole(ex.markdown)); } catch { continue; }
    const w = document.createElement('div');
    w.append(want.content);
    if (norm(got) === norm(w)) passed.push(ex.number);
  }
  return passed;
}
"""


def spec_examples() -> list[dict[str, Any]]:
    """The CommonMark spec's examples (from the commonmark-spec npm package)."""
    text = (ROOT / "node_modules" / "commonmark-spec" / "spec.txt").read_text()
    text = text.split("<!-- END TESTS -->")[0]
    out: list[dict[str, Any]] = []
    section = ""
    fence = "`" * 32
    pattern = re.compile(rf"^{fence} example\n(.*?)^\.\n(.*?)^{fence}$|^#{{1,6}} +([^\n]*)$",
                         re.M | re.S)
    for m in pattern.finditer(text):
        if m.group(3) is not None:
            section = m.group(3).strip()
            continue
        out.append({"number": len(out) + 1, "section": section,
                    "markdown": m.group(1).replace("→", "\t"),
                    "html": m.group(2).replace("→", "\t")})
    return out


def applies(example: dict[str, Any]) -> bool:
    """An example whose expected output a safe renderer may give: no raw HTML passed
    through, no image loaded, only absolute http(s)/mailto links."""
    html = example["html"]
    if example["section"] in SKIP_SECTIONS or "<img" in html:
        return False
    return all(h.startswith(("http:", "https:", "mailto:")) for h in RE_HREF.findall(html))


def serve(root: Path) -> Any:
    def handler(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path == "/":
            route.fulfill(body=PAGE, content_type="text/html")
            return
        prefix, _, rest = path.lstrip("/").partition("/")
        base = {"static": root / "app" / "static", "nm": root / "node_modules"}.get(prefix)
        file = (base / rest).resolve() if base else None
        if file is None or base is None or base.resolve() not in file.parents or not file.is_file():
            route.fulfill(status=404, body="")
            return
        kind = "text/javascript" if file.suffix in (".js", ".mjs") else "text/plain"
        route.fulfill(body=file.read_bytes(), content_type=kind)

    return handler


def answer_text() -> str:
    return "".join(text for text, _ in ANSWER) + "\n"


def measure() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    examples = spec_examples()
    applicable = [e for e in examples if applies(e)]
    long_answer = answer_text() * SECTIONS
    results: dict[str, Any] = {"answer_words": len(long_answer.split()), "spec": {
        "examples": len(examples), "applicable": len(applicable)}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.route(f"{ORIGIN}/**", serve(ROOT))
            page.goto(ORIGIN + "/")
            page.evaluate(SETUP)
            for name in ("ours", "libs"):
                page.evaluate(TIMING, [name, answer_text(), 50])  # warm up
                timing = page.evaluate(TIMING, [name, long_answer, EDGE])
                unsafe = page.evaluate(SAFETY, [name, HOSTILE])
                passed = set(page.evaluate(SPEC, [name, examples]))
                results[name] = {
                    **{k: round(v, 4) if isinstance(v, float) else v for k, v in timing.items()},
                    "unsafe": unsafe,
                    "spec_passed": len(passed),
                    "spec_applicable_passed": sum(e["number"] in passed for e in applicable),
                    "spec_applicable_failed": dict(Counter(
                        e["section"] for e in applicable if e["number"] not in passed)),
                }
                print(name, json.dumps(results[name]), file=sys.stderr)
        finally:
            browser.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.markdown",
                                     description="The two renderers, side by side.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "markdown.json")
    args = parser.parse_args(argv)
    results = measure()
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
