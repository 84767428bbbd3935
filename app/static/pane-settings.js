/**
 * A pane's own settings: temperature, max tokens and system prompt for that slot only,
 * sent as its target's `params` and its first `messages` entry. Empty fields fall back to
 * the chat's (Settings), so a pane only carries what differs.
 */

import { el } from "./dom.js";

/** The `params` a pane adds to its target, or null when it adds none. */
export function paneParams(pane) {
  const params = {};
  if (typeof pane.params?.temperature === "number") params.temperature = pane.params.temperature;
  if (typeof pane.params?.max_tokens === "number") params.max_tokens = pane.params.max_tokens;
  return Object.keys(params).length ? params : null;
}

/** True when a pane has any setting of its own. */
export const isTuned = (pane) => paneParams(pane) !== null || typeof pane.system === "string";

function field(label, input) {
  const wrap = el("label", "field");
  wrap.append(document.createTextNode(label), input);
  return wrap;
}

function numberInput(min, max, step) {
  const input = el("input");
  input.type = "number";
  input.min = String(min);
  if (max !== null) input.max = String(max);
  input.step = String(step);
  input.placeholder = "As the chat";
  return input;
}

/** The form under a pane's head; `changed()` is called after the pane's data changes. */
export class PaneSettings {
  constructor(pane, changed) {
    this.root = el("form", "pane-settings");
    this.root.hidden = true;
    this.root.setAttribute("aria-label", "Settings for this pane");
    const temperature = numberInput(0, 2, 0.1);
    const maxTokens = numberInput(1, null, 1);
    const system = el("textarea");
    system.rows = 3;
    system.placeholder = "As the chat";
    temperature.value = pane.params?.temperature ?? "";
    maxTokens.value = pane.params?.max_tokens ?? "";
    system.value = pane.system ?? "";
    this.root.append(
      field("Temperature", temperature),
      field("Max tokens", maxTokens),
      field("System prompt", system),
    );
    this.root.addEventListener("submit", (e) => e.preventDefault());
    this.root.addEventListener("change", () => {
      const temp = parseFloat(temperature.value);
      const max = parseInt(maxTokens.value, 10);
      pane.params = {};
      if (Number.isFinite(temp)) pane.params.temperature = Math.min(2, Math.max(0, temp));
      if (Number.isFinite(max) && max > 0) pane.params.max_tokens = max;
      if (system.value.trim()) pane.system = system.value.trim();
      else delete pane.system;
      changed();
    });
  }
}
