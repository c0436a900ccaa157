// The live event log: bounded, newest first, filtered by name prefix, pausable.

import { fill, h, timeOfDay } from "./dom.js";

/** The entries (no DOM): what the log keeps and what it shows. */
export class EventLog {
  constructor(limit = 500) {
    this.limit = limit;
    this.entries = []; // newest first
    this.prefix = "";
    this.paused = false;
    this.missed = 0; // events that arrived while paused
  }

  add(event) {
    this.entries.unshift(event);
    if (this.entries.length > this.limit) this.entries.length = this.limit;
    if (this.paused) this.missed += 1;
  }

  visible() {
    const prefix = this.prefix;
    return prefix ? this.entries.filter((e) => e.name.startsWith(prefix)) : this.entries;
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) this.missed = 0;
  }

  clear() {
    this.entries = [];
    this.missed = 0;
  }
}

/**
 * The log's panel: filter field, pause and clear buttons, the list.
 * `source(event)` names where an event came from (a device name, "API").
 * Returns {element, add(event), refresh(), setState(text)}.
 */
export function eventLogView(log, { title, source, label }) {
  const filterId = `${label}-filter`;
  const list = h("ol", { class: "events", "aria-label": `${title}, newest first` });
  const state = h("span", { class: "stream-state", role: "status" });
  const pause = h("button", { type: "button", "aria-pressed": String(log.paused) },
    log.paused ? "Resume" : "Pause");
  const note = h("span", { class: "missed" });
  const filter = h("input", {
    id: filterId, type: "search", placeholder: "e.g. spark/", autocomplete: "off",
    spellcheck: "false", value: log.prefix,
  });
  let scheduled = false;

  function render() {
    scheduled = false;
    if (log.paused) {
      fill(note, log.missed ? `${log.missed} new while paused` : "paused");
      return;
    }
    fill(note);
    const rows = log.visible().map((e) => h(
      "li", { class: "event" },
      h("time", { datetime: e.published_at }, timeOfDay(e.published_at)),
      h("span", { class: "event-name" }, e.name),
      h("span", { class: "event-data" }, e.data === null || e.data === undefined ? "" : String(e.data)),
      h("span", { class: "event-source" }, source(e)),
    ));
    fill(list, rows.length ? rows : h("li", { class: "empty" },
      log.entries.length ? "No event matches the filter." : "No events yet."));
  }

  function refresh() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(render);
    }
  }

  filter.addEventListener("input", () => {
    log.prefix = filter.value;
    render();
  });
  pause.addEventListener("click", () => {
    log.setPaused(!log.paused);
    pause.setAttribute("aria-pressed", String(log.paused));
    fill(pause, log.paused ? "Resume" : "Pause");
    render();
  });
  const clear = h("button", { type: "button", onclick: () => { log.clear(); render(); } }, "Clear");

  const element = h("section", { class: "panel log", "aria-labelledby": `${label}-title` },
    h("div", { class: "panel-head" },
      h("h2", { id: `${label}-title` }, title), state),
    h("div", { class: "log-controls" },
      h("label", { for: filterId }, "Filter by name prefix"), filter, pause, clear, note),
    list);
  render();
  return {
    element,
    add(event) { log.add(event); refresh(); },
    refresh,
    setState(text) { fill(state, text); },
  };
}
