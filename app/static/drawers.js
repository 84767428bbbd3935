/**
 * The two side drawers: History (conversations saved in this browser: open, delete) and
 * Settings (system prompt for new chats, temperature, max tokens, API key, blind mode and
 * its tally; saved at once).
 */

import { el } from "./dom.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);

export class Drawers {
  /** hooks: currentId(), beforeList(), open(id), deleted(id), keyChanged(). */
  constructor(settings, hooks) {
    this.settings = settings;
    this.hooks = hooks;
    this.pairs = [
      [$("history"), $("history-btn")],
      [$("settings"), $("settings-btn")],
    ];
    for (const [drawer, button] of this.pairs) {
      button.addEventListener("click", () => this.toggle(drawer, drawer.hidden));
    }
    for (const close of document.querySelectorAll("[data-close-drawer]")) {
      close.addEventListener("click", () => this.close(true));
    }
    // A click anywhere outside an open drawer (and its button) closes it.
    document.addEventListener("pointerdown", (e) => {
      const inside = this.pairs.some(([d, b]) => d.contains(e.target) || b.contains(e.target));
      if (!inside) this.close();
    });
    this.bindSettings();
  }

  /**
   * Closes any open drawer; true if one was open. With `refocus` (Esc, Close) focus goes
   * back to the button that opened it, instead of falling to the page's start.
   */
  close(refocus = false) {
    const open = this.pairs.find(([d]) => !d.hidden);
    if (open) this.toggle(null, false);
    if (open && refocus) open[1].focus();
    return !!open;
  }

  toggle(drawer, show) {
    for (const [d, b] of this.pairs) {
      const open = d === drawer && show;
      d.hidden = !open;
      b.setAttribute("aria-expanded", String(open));
    }
    if (!show) return;
    if (drawer.id === "history") this.renderHistory();
    if (drawer.id === "settings") this.renderTally();
    drawer.querySelector("button, input, textarea")?.focus();
  }

  renderHistory() {
    this.hooks.beforeList();
    const current = this.hooks.currentId();
    const items = store.listConversations().map((entry) => {
      const li = el("li", "history-item" + (entry.id === current ? " current" : ""));
      const open = el("button", "history-open");
      open.type = "button";
      const when = new Date(entry.updated).toLocaleString();
      open.append(
        el("span", "history-title", entry.title || "Untitled"),
        el("span", "history-meta", when + " · " + entry.models.join(", ")),
      );
      open.addEventListener("click", () => {
        this.close();
        this.hooks.open(entry.id);
      });
      const del = el("button", "btn ghost history-delete", "Delete");
      del.type = "button";
      del.setAttribute("aria-label", "Delete " + (entry.title || "conversation"));
      del.addEventListener("click", () => {
        store.deleteConversation(entry.id);
        this.hooks.deleted(entry.id);
        this.renderHistory();
      });
      li.append(open, del);
      return li;
    });
    if (!items.length) items.push(el("li", "history-none", "No saved conversations yet."));
    $("history-list").replaceChildren(...items);
  }

  renderTally() {
    const rows = Object.entries(store.loadTally())
      .sort((a, b) => b[1].picked - a[1].picked || a[0].localeCompare(b[0]))
      .map(([model, t]) => {
        const tr = el("tr");
        const name = el("th", "tally-model", model);
        name.scope = "row";
        tr.append(name, el("td", "", String(t.picked)), el("td", "", String(t.rounds)));
        return tr;
      });
    if (!rows.length) {
      const td = el("td", "muted", "No blind picks yet.");
      td.colSpan = 3;
      const tr = el("tr");
      tr.append(td);
      rows.push(tr);
    }
    $("tally-rows").replaceChildren(...rows);
  }

  bindSettings() {
    const s = this.settings;
    const system = $("set-system");
    const temperature = $("set-temperature");
    const maxTokens = $("set-max-tokens");
    const apiKey = $("set-api-key");
    system.value = s.system;
    temperature.value = s.temperature ?? "";
    maxTokens.value = s.maxTokens ?? "";
    apiKey.value = s.apiKey;
    const read = () => {
      s.system = system.value;
      const temp = parseFloat(temperature.value);
      s.temperature = Number.isFinite(temp) ? Math.min(2, Math.max(0, temp)) : null;
      const max = parseInt(maxTokens.value, 10);
      s.maxTokens = Number.isFinite(max) && max > 0 ? max : null;
      const keyChanged = s.apiKey !== apiKey.value.trim();
      s.apiKey = apiKey.value.trim();
      store.saveSettings(s);
      if (keyChanged) this.hooks.keyChanged();
    };
    for (const input of [system, temperature, maxTokens, apiKey]) {
      input.addEventListener("change", read);
    }
    const blind = $("set-blind");
    blind.checked = s.blind;
    blind.addEventListener("change", () => {
      s.blind = blind.checked;
      store.saveSettings(s);
    });
    $("tally-reset").addEventListener("click", () => {
      store.resetTally();
      this.renderTally();
    });
  }
}
