// Small DOM and formatting helpers.
//
// Elements are built with h() from text nodes and attributes, never from HTML
// strings, so nothing a device or user sends (names, event data) is ever
// parsed as markup.

/** An element: h("button", {type: "button", onclick: f}, "Read"). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "value" || key === "checked") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children: nodes, strings and numbers (as text), arrays; null/false skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace every child of el. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let counter = 0;

/** A page-unique id for label/for pairs. */
export function uid(prefix = "f") {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled form field: [label, input], the input built from props. */
export function field(labelText, props = {}) {
  const id = props.id || uid();
  const input = h(props.tag || "input", { ...props, tag: undefined, id });
  return { label: h("label", { for: id }, labelText), input };
}

/** A <form> that calls handler(event) on submit (Enter or its button), never navigating. */
export function form(props, handler, ...children) {
  const el = h("form", props, ...children);
  el.addEventListener("submit", (event) => {
    event.preventDefault();
    handler(event);
  });
  return el;
}

/**
 * Run an async action for a button or form: disable it meanwhile, show the
 * outcome (or the API's error_description) in `output`.  Returns the result,
 * or undefined on failure.
 */
export async function act(control, output, action) {
  const controls = control instanceof HTMLFormElement
    ? [...control.querySelectorAll("button, input, select, textarea")]
    : [control];
  const wasDisabled = controls.map((c) => c.disabled);
  controls.forEach((c) => { c.disabled = true; });
  const working = "…";
  if (output) {
    output.classList.remove("error");
    output.classList.add("busy");
    fill(output, working);
  }
  try {
    const result = await action();
    if (output && output.textContent === working) fill(output);
    return result;
  } catch (error) {
    if (output) {
      output.classList.add("error");
      fill(output, error.message || String(error));
    }
    return undefined;
  } finally {
    controls.forEach((c, i) => { c.disabled = wasDisabled[i]; });
    if (output) output.classList.remove("busy");
  }
}

/** "12 s ago", "5 min ago"... for an ISO time (or "never"). */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return String(iso);
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} days ago`;
}

/** Local date and time of an ISO time, for tooltips and tables. */
export function when(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** Local time of day (HH:MM:SS) of an ISO time, for the event log. */
export function timeOfDay(iso) {
  const date = iso ? new Date(iso) : new Date();
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour12: false });
}

const PLATFORMS = {
  0: "Core", 6: "Photon", 8: "P1", 10: "Electron", 12: "Argon", 13: "Boron", 14: "Xenon",
  22: "A SoM", 23: "B SoM", 25: "B5 SoM", 26: "Tracker", 32: "P2",
};

/** A platform id as a name ("Photon"), or "platform 42", or "". */
export function platformName(id) {
  if (id === null || id === undefined) return "";
  return PLATFORMS[id] || `platform ${id}`;
}
