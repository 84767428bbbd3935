/** The helpers the page's views share: elements, slot colours, idle moments. */

/** An element with a class and text. */

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Gives `node` slot `index`'s colour (`--slot-hue`, read by the style sheets): hues 137°
 * apart, so neighbouring slots never look alike, the same on every page and view.
 */
export function setSlotHue(node, index) {
  node.style.setProperty("--slot-hue", String((index * 137 + 210) % 360));
}

/** Runs `f` at the page's next idle moment (after a timeout where there is no such API). */
export const whenIdle = globalThis.requestIdleCallback?.bind(globalThis)
  ?? ((f) => setTimeout(f, 50));
