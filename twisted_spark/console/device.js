// One device: its details, variables (Read), functions (Call), rename,
// signal, ping, flashing a binary with upload progress, and its own events.

import { act, ago, fill, field, form, h, platformName, when } from "./dom.js";
import { EventLog, eventLogView } from "./eventlog.js";

const STREAM_STATES = {
  connecting: "connecting…", open: "live", retrying: "reconnecting…", closed: "stopped",
};

function kib(bytes) {
  return `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KiB`;
}

function shown(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function deviceView(ctx, ident) {
  const api = ctx.api;
  let info = null;
  let id = ident;

  const heading = h("h1", {}, ctx.deviceName(ident));
  const badge = h("span", { class: "status" });
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const details = h("dl", { class: "details" });
  const variables = h("div");
  const functions = h("div");

  // -- details, variables, functions (re-rendered when the device reconnects) -------

  function renderStatus() {
    const listed = ctx.devices.get(id);
    const online = listed ? listed.connected : info && info.connected;
    badge.className = `status ${online ? "online" : "offline"}`;
    fill(badge, online ? "online" : "offline");
  }

  function renderDetails() {
    const listed = ctx.devices.get(id) || {};
    const heard = listed.last_heard || info.last_heard;
    const rows = [
      ["Device ID", h("code", {}, info.id)],
      ["Name", info.name || "—"],
      ["Platform", platformName(info.platform_id) || "—"],
      ["Last heard", h("time", { datetime: heard || "", title: when(heard) }, ago(heard))],
      ["Last IP address", info.last_ip_address || "—"],
      ["Firmware version", shown(info.firmware_version) || "—"],
      ["Product ID", shown(info.product_id) || "—"],
      ctx.admin && ["Owner", listed.owner || "nobody (unclaimed)"],
    ].filter(Boolean);
    fill(details, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  }

  function renderVariables() {
    const names = Object.keys(info.variables || {}).sort();
    if (!names.length) {
      fill(variables, h("p", { class: "empty" }, "The device exposes no variables."));
      return;
    }
    fill(variables, h("div", { class: "table-wrap" }, h("table", { class: "variables" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Variable"), h("th", { scope: "col" }, "Type"),
        h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      h("tbody", {}, names.map((name) => {
        const value = h("output", { class: "value", "aria-label": `Value of ${name}` });
        const read = h("button", { type: "button", "aria-label": `Read ${name}` }, "Read");
        read.addEventListener("click", () => act(read, value, async () => {
          const answer = await api.get(api.device(id, name));
          fill(value, shown(answer.result));
        }));
        return h("tr", { "data-variable": name },
          h("th", { scope: "row" }, name), h("td", {}, info.variables[name]), h("td", {}, value),
          h("td", {}, read));
      })))));
  }

  function renderFunctions() {
    const names = [...(info.functions || [])].sort();
    if (!names.length) {
      fill(functions, h("p", { class: "empty" }, "The device exposes no functions."));
      return;
    }
    fill(functions, names.map((name) => {
      const output = h("output", { class: "result", "aria-label": `Result of ${name}` });
      const argument = field(`Argument for ${name}`, { name: "arg", autocomplete: "off", spellcheck: "false" });
      argument.label.className = "sr-only";
      argument.input.placeholder = "argument";
      return form({ class: "function", "data-function": name }, (event) => act(event.target, output, async () => {
        const answer = await api.post(api.device(id, name), { arg: argument.input.value });
        fill(output, `returned ${answer.return_value}`);
      }),
      h("span", { class: "function-name" }, name), argument.label, argument.input,
      h("button", { type: "submit", "aria-label": `Call ${name}` }, "Call"), output);
    }));
  }

  // A device that just connected may not have described itself yet: ask again a few times.
  let retries = 0;
  let retryTimer = null;

  async function load() {
    clearTimeout(retryTimer);
    try {
      info = await api.get(api.device(ident));
    } catch (error) {
      problem.hidden = false;
      fill(problem, error.message);
      return;
    }
    problem.hidden = true;
    id = info.id;
    fill(heading, info.name || info.id);
    if (!newName.input.value) newName.input.value = info.name || "";
    renderStatus();
    renderDetails();
    const undescribed = info.connected && !Object.keys(info.variables || {}).length
      && !(info.functions || []).length;
    if (undescribed && retries < 10) {
      retries += 1;
      const waiting = h("p", { class: "empty" }, "Waiting for the device to describe itself…");
      fill(variables, waiting);
      fill(functions, waiting.cloneNode(true));
      retryTimer = setTimeout(load, 1000);
      return;
    }
    retries = 0;
    renderVariables();
    renderFunctions();
  }

  // -- actions: rename, signal, ping -------------------------------------------------

  const actionOutput = h("output", { class: "result" });
  const newName = field("New name", {
    name: "name", required: true, pattern: "[A-Za-z0-9_\\-]{1,63}", autocomplete: "off", spellcheck: "false",
  });
  const rename = form({ class: "inline-form" }, (event) => act(event.target, actionOutput, async () => {
    const answer = await api.put(api.device(id), { name: newName.input.value.trim() });
    info.name = answer.name;
    fill(heading, answer.name);
    renderDetails();
    fill(actionOutput, `Renamed to ${answer.name}.`);
    ctx.reloadDevices().catch(() => {});
  }), newName.label, newName.input, h("button", { type: "submit" }, "Rename"));

  function button(text, label, action) {
    const el = h("button", { type: "button", "aria-label": label }, text);
    el.addEventListener("click", () => act(el, actionOutput, action));
    return el;
  }

  const signalOn = button("Signal on", "Start signaling (rainbow LED)", async () => {
    await api.put(api.device(id), { signal: "1" });
    fill(actionOutput, "The device is signaling (rainbow LED).");
  });
  const signalOff = button("Signal off", "Stop signaling", async () => {
    await api.put(api.device(id), { signal: "0" });
    fill(actionOutput, "The device stopped signaling.");
  });
  const ping = button("Ping", "Ping the device", async () => {
    const started = performance.now();
    const answer = await api.put(api.device(id, "ping"));
    const ms = Math.round(performance.now() - started);
    fill(actionOutput, answer.online ? `The device answered the ping (${ms} ms).` : "The device did not answer the ping.");
  });

  // -- flashing ---------------------------------------------------------------------

  const flashOutput = h("output", { class: "result", "aria-live": "polite" });
  const flashOutcome = h("p", { class: "flash-outcome", role: "status" });
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });
  const binary = field("Firmware binary (.bin)", { type: "file", name: "file", accept: ".bin,application/octet-stream", required: true });
  const flash = form({ class: "flash" }, (event) => act(event.target, flashOutput, async () => {
    const file = binary.input.files[0];
    const data = new FormData();
    data.append("file", file, file.name.endsWith(".bin") ? file.name : `${file.name}.bin`);
    data.append("file_type", "binary");
    progress.hidden = false;
    progress.value = 0;
    fill(flashOutcome);
    fill(flashOutput, "Uploading…");
    try {
      const answer = await api.upload(api.device(id), data, (sent, total) => {
        progress.value = Math.round((100 * sent) / total);
        fill(flashOutput, sent < total
          ? `Uploading: ${progress.value} % (${kib(sent)} of ${kib(total)})`
          : "Uploaded; the server is sending it to the device…");
      });
      progress.value = 100;
      fill(flashOutput, answer.status || answer.message || "Done.");
    } catch (error) {
      progress.hidden = true;
      throw error;
    }
  }),
  binary.label, binary.input, h("button", { type: "submit", class: "primary" }, "Flash"),
  progress, flashOutput, flashOutcome);

  // -- the device's own events ------------------------------------------------------

  const log = new EventLog(200);
  // Start with what the main stream already saw from this device (oldest first).
  for (const event of [...ctx.log.entries].reverse()) {
    if (event.coreid === ident || ctx.devices.get(event.coreid)?.name === ident) log.add(event);
  }
  const logView = eventLogView(log, { title: "This device's events", label: "device-log", source: () => "" });
  const stream = api.stream(api.device(ident, "events"), {
    onEvent(event) {
      logView.add(event);
      if (event.name === "spark/flash/status") {
        fill(flashOutcome, `The device reported: ${event.data}`);
        flashOutcome.className = `flash-outcome ${event.data === "failed" ? "error" : ""}`;
      }
      if (event.name === "spark/status" && event.data === "online") load();
    },
    onState: (state) => logView.setState(STREAM_STATES[state] || state),
    onError: (error) => logView.setState(error.message),
  });

  const refresh = h("button", { type: "button", class: "small", onclick: () => load() }, "Refresh");
  const unlisten = ctx.listen("devices", () => {
    if (info) {
      renderStatus();
      renderDetails();
    }
  });
  load();

  const element = h("div", { class: "device" },
    h("p", { class: "back" }, h("a", { href: "#/" }, "← All devices")),
    h("div", { class: "device-head" }, heading, badge),
    problem,
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "details-title" },
        h("div", { class: "panel-head" }, h("h2", { id: "details-title" }, "Details"), refresh),
        details),
      h("section", { class: "panel", "aria-labelledby": "actions-title" },
        h("h2", { id: "actions-title" }, "Actions"),
        rename,
        h("div", { class: "buttons" }, signalOn, signalOff, ping),
        actionOutput),
      h("section", { class: "panel", "aria-labelledby": "variables-title" },
        h("h2", { id: "variables-title" }, "Variables"), variables),
      h("section", { class: "panel", "aria-labelledby": "functions-title" },
        h("h2", { id: "functions-title" }, "Functions"), functions),
      h("section", { class: "panel", "aria-labelledby": "flash-title" },
        h("h2", { id: "flash-title" }, "Flash firmware"),
        h("p", { class: "hint" }, "A compiled binary, sent over the air. The device restarts when it is done."),
        flash),
      logView.element));
  return {
    element,
    title: ctx.deviceName(ident),
    dispose() {
      clearTimeout(retryTimer);
      stream.close();
      unlisten();
    },
  };
}
