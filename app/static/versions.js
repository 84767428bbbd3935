/**
 * The ‹ 2/3 › control of a turn with several versions (Regenerate, an edited prompt): it
 * only says which version is shown and asks for another; the pane swaps the view.
 */

import { el } from "./dom.js";

export class VersionNav {
  /** onShow(index): show that version (0 is the oldest). */
  constructor(onShow) {
    this.root = el("div", "versions");
    this.root.setAttribute("role", "group");
    this.root.setAttribute("aria-label", "Versions of this answer");
    this.prev = navButton("‹", "Previous version");
    this.label = el("span", "versions-label");
    this.label.setAttribute("aria-live", "polite");
    this.next = navButton("›", "Next version");
    this.root.append(this.prev, this.label, this.next);
    this.index = 0;
    this.prev.addEventListener("click", () => onShow(this.index - 1));
    this.next.addEventListener("click", () => onShow(this.index + 1));
  }

  /** Shows version `index` of `count`; hidden while there is only one. */
  set(index, count) {
    this.index = index;
    this.root.hidden = count < 2;
    this.label.textContent = index + 1 + "/" + count;
    this.prev.disabled = index <= 0;
    this.next.disabled = index >= count - 1;
  }
}

function navButton(text, label) {
  const b = el("button", "btn version-step", text);
  b.type = "button";
  b.setAttribute("aria-label", label);
  b.title = label;
  return b;
}
