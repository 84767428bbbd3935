/**
 * The model picker: the picked models as chips in slot order, and a search box that
 * filters GET /v1/models as you type (a listbox, driven by the arrow keys and Enter). A
 * model may be picked more than once, up to the server's slot limit.
 */

import { el, setSlotHue } from "./dom.js";
import { formatUsd } from "./pane.js";

/** "128k context · $0.15 / $0.60 per M tokens": what the server says of a model, or "". */
export function modelFacts(m) {
  const facts = [];
  if (m.context) {
    const k = m.context >= 1000 ? Math.round(m.context / 1000) + "k" : String(m.context);
    facts.push(k + " context");
  }
  if (m.pricing) {
    facts.push(formatUsd(m.pricing.input) + " in / " + formatUsd(m.pricing.output) + " out per M tokens");
  }
  if (m.images === false) facts.push("no images");
  return facts.join(" · ");
}

/** Models matching every word of `query`, those starting with it first. */
export function filterModels(models, query) {
  const q = query.trim().toLowerCase();
  const terms = q.split(/\s+/).filter(Boolean);
  const hits = models.filter((m) => terms.every((t) => m.ref.toLowerCase().includes(t)));
  const starts = (m) => {
    const ref = m.ref.toLowerCase();
    return ref.startsWith(q) || ref.slice(ref.indexOf("/") + 1).startsWith(q) ? 0 : 1;
  };
  return hits.map((m, i) => [starts(m), i, m]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]);
}

export class Picker {
  /** `store`: where dismissed server notes are remembered (store.js). */
  constructor(root, onChange, store) {
    this.root = root;
    this.onChange = onChange;
    this.store = store;
    this.notes = [];
    this.models = [];
    this.loaded = false;
    this.maxSlots = 9;
    this.selection = [];
    this.matches = [];
    this.active = 0;
    this.disabled = false;

    this.chips = el("ol", "chips");
    this.chips.setAttribute("aria-label", "Picked models, in slot order");
    const combo = el("div", "combo");
    this.input = el("input", "model-search");
    this.input.id = "model-search";
    this.input.type = "search";
    this.input.autocomplete = "off";
    this.input.spellcheck = false;
    this.input.placeholder = "Add a model…";
    this.input.setAttribute("role", "combobox");
    this.input.setAttribute("aria-autocomplete", "list");
    this.input.setAttribute("aria-expanded", "false");
    this.input.setAttribute("aria-controls", "model-list");
    this.input.setAttribute("aria-label", "Search models to add");
    this.list = el("ul", "model-list");
    this.list.id = "model-list";
    this.list.setAttribute("role", "listbox");
    this.list.hidden = true;
    this.count = el("span", "slot-count");
    // The server's notes (what it left out and why): one box in the picker's row until
    // dismissed, not in the listbox (which may hold only options) and not tied to its
    // opening, so the Dismiss button is reachable by Tab.
    this.notesBox = el("div", "picker-notes");
    this.notesBox.id = "picker-notes";
    this.notesBox.setAttribute("role", "note");
    this.notesBox.hidden = true;
    combo.append(this.input, this.list);
    root.append(this.chips, combo, this.count, this.notesBox);

    this.input.addEventListener("focus", () => this.open());
    this.input.addEventListener("input", () => {
      this.active = 0;
      this.open();
    });
    this.input.addEventListener("blur", () => setTimeout(() => this.close(), 120));
    this.input.addEventListener("keydown", (e) => this.onKey(e));
    this.list.addEventListener("mousedown", (e) => e.preventDefault());
    this.list.addEventListener("click", (e) => {
      const li = e.target.closest("li[data-index]");
      if (li) this.pick(this.matches[Number(li.dataset.index)]);
    });
    this.render();
  }

  get isOpen() {
    return !this.list.hidden;
  }

  setModels(models, maxSlots, notes = []) {
    this.models = models;
    const gone = new Set(this.store?.dismissedNotes() ?? []);
    this.notes = notes.filter((n) => typeof n === "string" && !gone.has(n));
    this.renderNotes();
    this.loaded = true;
    if (maxSlots) this.maxSlots = maxSlots;
    this.render();
    if (this.isOpen) this.open();
  }

  setSelection(refs) {
    this.selection = refs.slice();
    this.render();
  }

  setDisabled(disabled) {
    this.disabled = disabled;
    this.render();
  }

  info(ref) {
    if (!this.loaded) return undefined;
    return this.models.find((m) => m.ref === ref) ?? null;
  }

  onKey(e) {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!this.isOpen) this.open();
      const n = this.matches.length;
      if (n) this.active = (this.active + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      this.renderList();
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (this.isOpen && this.matches[this.active]) this.pick(this.matches[this.active]);
    } else if (e.key === "Escape" && this.isOpen) {
      e.stopPropagation();
      this.close();
    } else if (e.key === "Backspace" && !this.input.value && this.selection.length) {
      this.remove(this.selection.length - 1);
    }
  }

  open() {
    if (this.disabled || this.selection.length >= this.maxSlots) return;
    this.matches = filterModels(this.models, this.input.value);
    this.active = Math.min(this.active, Math.max(0, this.matches.length - 1));
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.renderList();
  }

  renderNotes() {
    const text = el("ul", "picker-notes-list");
    text.append(...this.notes.map((n) => el("li", "", n)));
    const dismiss = el("button", "btn ghost picker-notes-dismiss", "Dismiss");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", "Dismiss the server's note" + (this.notes.length > 1 ? "s" : ""));
    dismiss.addEventListener("click", () => {
      this.store?.dismissNotes(this.notes);
      this.notes = [];
      this.renderNotes();
      this.input.focus();
    });
    this.notesBox.replaceChildren(text, dismiss);
    this.notesBox.hidden = !this.notes.length;
  }

  close() {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  pick(model) {
    if (!model || this.selection.length >= this.maxSlots) return;
    this.selection.push(model.ref);
    this.input.value = "";
    this.active = 0;
    this.render();
    this.onChange(this.selection.slice());
    if (this.selection.length < this.maxSlots) this.open();
    else this.close();
  }

  remove(index) {
    this.selection.splice(index, 1);
    this.render();
    this.onChange(this.selection.slice());
  }

  renderList() {
    const items = this.matches.map((m, i) => {
      const li = el("li", "model-option");
      li.id = "model-option-" + i;
      li.dataset.index = String(i);
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", String(i === this.active));
      const picked = this.selection.filter((r) => r === m.ref).length;
      const main = el("span", "option-main");
      main.append(el("span", "option-ref", m.ref));
      if (m.simulated) main.append(el("span", "tag sim", "simulated"));
      if (picked) main.append(el("span", "option-picked", "×" + picked));
      li.append(main);
      const facts = modelFacts(m);
      if (facts) li.append(el("span", "option-facts", facts));
      if (m.description) li.append(el("span", "option-desc", m.description));
      return li;
    });
    if (!items.length) {
      const text = this.loaded ? "No model matches." : "Loading models…";
      items.push(el("li", "model-none", text));
    }
    this.list.replaceChildren(...items);
    if (this.matches.length) {
      const id = "model-option-" + this.active;
      this.input.setAttribute("aria-activedescendant", id);
      this.list.querySelector("#" + id)?.scrollIntoView({ block: "nearest" });
    }
  }

  render() {
    const chips = this.selection.map((ref, i) => {
      const info = this.info(ref);
      const li = el("li", "chip");
      setSlotHue(li, i);
      if (info === null) li.classList.add("missing");
      li.append(el("span", "slot-no", String(i + 1)), el("span", "chip-ref", ref));
      if (info === null) li.title = "Not offered by this server";
      const x = el("button", "chip-remove", "×");
      x.type = "button";
      x.disabled = this.disabled;
      x.setAttribute("aria-label", "Remove " + ref + " (slot " + (i + 1) + ")");
      x.addEventListener("click", () => this.remove(i));
      li.append(x);
      return li;
    });
    this.chips.replaceChildren(...chips);
    const full = this.selection.length >= this.maxSlots;
    this.input.disabled = this.disabled || full;
    this.input.placeholder = full ? "All " + this.maxSlots + " slots used" : "Add a model…";
    this.count.textContent = this.selection.length + "/" + this.maxSlots;
    if (this.input.disabled) this.close();
  }
}
