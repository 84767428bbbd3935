/**
 * What the page adds to rendered answers for keyboard and screen-reader users. A code
 * block scrolls sideways, so it must be reachable by keyboard (WCAG 2.1.1): each one
 * becomes a focusable, labelled group. It is done here, on the nodes the renderer adds,
 * so that the cost stays per added node and never grows with the answer.
 */

/** Makes the code blocks in `node` (itself included) focusable, labelled groups. */
export function labelCode(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  const blocks = node.matches("pre") ? [node] : node.querySelectorAll("pre");
  for (const pre of blocks) {
    if (pre.hasAttribute("tabindex")) continue;
    const name = pre.parentElement?.querySelector(".md-code-lang")?.textContent.trim() ?? "";
    pre.tabIndex = 0;
    pre.setAttribute("role", "group");
    pre.setAttribute("aria-label", name ? "Code, " + name : "Code");
  }
}

/** Labels every code block added under `root` from now on; returns the observer. */
export function watchCode(root) {
  const observer = new MutationObserver((records) => {
    for (const r of records) for (const node of r.addedNodes) labelCode(node);
  });
  observer.observe(root, { childList: true, subtree: true });
  return observer;
}
