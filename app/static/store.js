/**
 * What the page keeps in localStorage: settings (picked models, system prompt, params, the
 * API key when the server needs one, the layout, blind mode), saved conversations, which
 * conversation is open, the blind-mode tally, the server notes already dismissed, and the
 * conversation-mode stream the thread page follows.
 * Conversations are written as a whole, so app.js writes them at most once a second while
 * streaming, less often as writing one grows slower (and at once when the page is hidden):
 * saving never costs per chunk.
 */

const PREFIX = "chorus:";
const MAX_CONVERSATIONS = 50;

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

/**
 * Attached images are not written: localStorage holds about 5 MB per origin, so one photo
 * would push every saved conversation out. Their names and sizes are kept.
 */
const withoutImageData = (key, value) => (key === "dataUrl" ? undefined : value);

/** Writes, dropping the oldest conversations when storage is full. */
function write(key, value) {
  const raw = JSON.stringify(value, withoutImageData);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      localStorage.setItem(PREFIX + key, raw);
      return true;
    } catch {
      const index = listConversations();
      const oldest = index.pop();
      if (!oldest) return false;
      localStorage.removeItem(PREFIX + "conv:" + oldest.id);
      localStorage.setItem(PREFIX + "convs", JSON.stringify(index));
    }
  }
  return false;
}

export function loadSettings() {
  const s = read("settings", {});
  return {
    models: Array.isArray(s.models) ? s.models.filter((m) => typeof m === "string") : null,
    system: typeof s.system === "string" ? s.system : "",
    temperature: typeof s.temperature === "number" ? s.temperature : null,
    maxTokens: typeof s.maxTokens === "number" ? s.maxTokens : null,
    apiKey: typeof s.apiKey === "string" ? s.apiKey : "",
    layout: s.layout === "aligned" ? "aligned" : "columns",
    blind: s.blind === true,
  };
}

export function saveSettings(settings) {
  write("settings", settings);
}

export function listConversations() {
  const list = read("convs", []);
  return Array.isArray(list) ? list : [];
}

export function loadConversation(id) {
  const conv = read("conv:" + id, null);
  return conv && Array.isArray(conv.panes) ? conv : null;
}

export function currentConversationId() {
  return read("current", null);
}

export function setCurrentConversation(id) {
  write("current", id);
}

function summary(conv) {
  return {
    id: conv.id,
    title: conv.title,
    updated: conv.updated,
    models: conv.panes.map((p) => p.model),
  };
}

export function saveConversation(conv) {
  if (!conv.panes.some((p) => p.turns.length)) return;
  conv.updated = Date.now();
  write("conv:" + conv.id, conv);
  const index = listConversations().filter((c) => c.id !== conv.id);
  index.unshift(summary(conv));
  for (const dropped of index.splice(MAX_CONVERSATIONS)) {
    localStorage.removeItem(PREFIX + "conv:" + dropped.id);
  }
  write("convs", index);
}

export function deleteConversation(id) {
  localStorage.removeItem(PREFIX + "conv:" + id);
  write("convs", listConversations().filter((c) => c.id !== id));
}

/** The conversation the thread page shows ({id, eventsUrl, stopUrl}), or null. */
export function loadThread() {
  const saved = read("thread", null);
  return saved && typeof saved.eventsUrl === "string" && typeof saved.stopUrl === "string"
    ? saved : null;
}

export function saveThread(saved) {
  write("thread", saved);
}

export function forgetThread() {
  localStorage.removeItem(PREFIX + "thread");
}

/** Blind-mode results per model: {model: {picked, rounds}}. */
export function loadTally() {
  const t = read("tally", {});
  return t && typeof t === "object" && !Array.isArray(t) ? t : {};
}

/** Counts one blind round: every slot's model took part, `picked` won it. */
export function countBlindPick(models, picked) {
  const tally = loadTally();
  for (const m of models) {
    tally[m] ??= { picked: 0, rounds: 0 };
    tally[m].rounds += 1;
  }
  tally[picked].picked += 1;
  write("tally", tally);
  return tally;
}

export function resetTally() {
  localStorage.removeItem(PREFIX + "tally");
}

/** The notes of GET /v1/models the user has dismissed (by their text). */
export function dismissedNotes() {
  const notes = read("notes-dismissed", []);
  return Array.isArray(notes) ? notes : [];
}

export function dismissNotes(notes) {
  write("notes-dismissed", [...new Set([...dismissedNotes(), ...notes])]);
}

export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
