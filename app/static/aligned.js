/**
 * The aligned view: one row per user turn across the panes, so the answers to one prompt
 * sit side by side and scroll together. The panes keep their heads (model, state, Stop,
 * Regenerate) in a row of their own that stays on top; each turn's view is placed in its
 * row's cell for its slot. The prompt shows once per row, above the answers.
 */

import { el, setSlotHue } from "./dom.js";

export class AlignedLayout {
  /** onEdit(): the last row's Edit button was pressed. */
  constructor(count, onEdit) {
    this.count = count;
    this.onEdit = onEdit;
    this.root = el("div", "aligned");
    this.root.style.setProperty("--cols", String(Math.max(1, count)));
    this.head = el("div", "aligned-head");
    this.rows = [];
    this.order = [...Array(count).keys()]; // the panes' order on screen
    this.root.append(this.head);
    this.stick = true;
  }

  /** Puts the panes' heads (their roots) in the top row, in slot order. */
  setHeads(roots) {
    this.heads = roots;
    this.head.replaceChildren(...roots);
  }

  /** Puts heads and cells in `order` (a blind round shuffles them). */
  setOrder(order) {
    // Unchanged, nothing moves: a moved cell is laid out and painted anew.
    if (this.order && order.every((p, i) => this.order[i] === p)) return;
    this.order = order;
    this.head.append(...order.map((p) => this.heads[p]));
    for (const row of this.rows) row.answers.append(...order.map((p) => row.cells[p]));
  }

  /** Places turn `t` of slot `p` (`view.root`) in its row, replacing what was there. */
  place(p, t, view) {
    while (this.rows.length <= t) this.addRow();
    const row = this.rows[t];
    row.prompt.textContent = view.turn.user; // the version placed last (an edit changes it)
    row.cells[p].replaceChildren(view.root);
  }

  addRow() {
    const row = el("section", "turn-row");
    row.dataset.turn = String(this.rows.length);
    const line = el("div", "prompt-line row-prompt");
    const prompt = el("div", "user-msg");
    prompt.id = "row-prompt-" + this.rows.length;
    row.setAttribute("aria-labelledby", prompt.id);
    const edit = el("button", "btn edit", "✎ Edit");
    edit.type = "button";
    edit.setAttribute("aria-label", "Edit this prompt and send it again");
    edit.addEventListener("click", () => this.onEdit());
    line.append(edit, prompt);
    const cells = [];
    for (let p = 0; p < this.count; p++) {
      const cell = el("div", "turn-cell");
      setSlotHue(cell, p);
      cell.dataset.slot = String(p);
      cells.push(cell);
    }
    const answers = el("div", "row-answers");
    answers.append(...this.order.map((p) => cells[p]));
    row.append(line, answers);
    this.rows.at(-1)?.root.classList.add("settled"); // its Edit button hides (style.css)
    this.root.append(row);
    this.rows.push({ root: row, prompt, answers, cells });
  }

  /** Keeps the newest text in view of `container` while the reader has not scrolled up. */
  scroll(container) {
    if (this.stick) container.scrollTop = container.scrollHeight;
  }

  /** Called on the container's scroll events: scrolled up, the view stops following. */
  scrolled(container) {
    this.stick = container.scrollHeight - container.scrollTop - container.clientHeight < 48;
  }
}
