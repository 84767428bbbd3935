/**
 * Bringing a drawn preview up to a newly rendered one with the fewest DOM changes.
 *
 * While a block streams, each chunk renders it again (markdown.js). Putting the new nodes
 * in place of the old made the browser build, style, lay out and paint the whole block
 * anew every frame; between two chunks most of it is equal, and usually only the last text
 * node grew. patch() keeps every old node that matches the new one (same kind, same name,
 * same attributes) and changes only text that differs, so the browser reshapes one line.
 */

function sameAttributes(a, b) {
  if (a.attributes.length !== b.attributes.length) return false;
  for (const { name, value } of a.attributes) {
    if (b.getAttribute(name) !== value) return false;
  }
  return true;
}

/**
 * Makes `old` (in the DOM) show what `next` (detached) shows; returns the node now in the
 * DOM: `old`, changed in place, or `next` put in its place where they differ in kind.
 */
export function patch(old, next) {
  if (old.nodeType !== next.nodeType || old.nodeName !== next.nodeName) {
    old.replaceWith(next);
    return next;
  }
  if (old.nodeType === Node.TEXT_NODE) {
    if (old.data !== next.data) old.data = next.data;
    return old;
  }
  if (old.nodeType !== Node.ELEMENT_NODE || !sameAttributes(old, next)) {
    old.replaceWith(next);
    return next;
  }
  const before = [...old.childNodes];
  const after = [...next.childNodes];
  const both = Math.min(before.length, after.length);
  for (let i = 0; i < both; i++) patch(before[i], after[i]);
  for (let i = both; i < before.length; i++) before[i].remove();
  for (let i = both; i < after.length; i++) old.append(after[i]);
  return old;
}
