// The landing view: the devices (live online/offline and last heard), the
// live event log, publishing an event, claiming a device; for administrators
// also the devices nobody has claimed.

import { ago, fill, field, form, h, act, platformName, when } from "./dom.js";
import { eventLogView } from "./eventlog.js";

const STREAM_STATES = {
  connecting: "connecting…", open: "live", retrying: "reconnecting…", closed: "stopped",
};

function status(device) {
  const online = Boolean(device.connected);
  return h("span", { class: `status ${online ? "online" : "offline"}` }, online ? "online" : "offline");
}

function devicesTable(devices, admin) {
  if (!devices.length) return h("p", { class: "empty" }, "No devices.");
  return h("div", { class: "table-wrap" }, h("table", { class: "devices" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Name"),
      h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "Last heard"),
      h("th", { scope: "col", class: "wide" }, "Platform"),
      admin && h("th", { scope: "col", class: "wide" }, "Owner"))),
    h("tbody", {}, devices.map((d) => h("tr", { "data-device": d.id },
      h("td", {}, h("a", { href: `#/devices/${encodeURIComponent(d.id)}`, class: d.name ? "" : "id" }, d.name || d.id),
        d.name && h("div", { class: "id" }, d.id)),
      h("td", {}, status(d)),
      h("td", {}, h("time", { datetime: d.last_heard || "", title: when(d.last_heard) }, ago(d.last_heard))),
      h("td", { class: "wide" }, platformName(d.platform_id)),
      admin && h("td", { class: "wide" }, d.owner || ""))))));
}

function unclaimedPanel(ctx, devices) {
  const output = h("output", { class: "result" });
  const rows = devices.map((d) => {
    const claim = h("button", { type: "button", "aria-label": `Claim ${d.id}` }, "Claim");
    claim.addEventListener("click", () => act(claim, output, async () => {
      await ctx.api.post("/v1/devices", { id: d.id });
      await ctx.reloadDevices();
    }));
    return h("tr", { "data-device": d.id },
      h("td", {}, h("a", { href: `#/devices/${encodeURIComponent(d.id)}`, class: d.name ? "" : "id" }, d.name || d.id)),
      h("td", {}, status(d)),
      h("td", { class: "wide" }, platformName(d.platform_id)),
      h("td", {}, claim));
  });
  return h("section", { class: "panel", "aria-labelledby": "unclaimed-title" },
    h("h2", { id: "unclaimed-title" }, "Unclaimed devices"),
    h("p", { class: "hint" }, "Registered devices nobody owns. Only administrators see them."),
    rows.length
      ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Device"), h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col", class: "wide" }, "Platform"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
        h("tbody", {}, rows)))
      : h("p", { class: "empty" }, "None."),
    output);
}

function claimForm(ctx) {
  const output = h("output", { class: "result" });
  const id = field("Device ID", { name: "id", required: true, pattern: "[0-9A-Fa-f]{24}", autocomplete: "off", spellcheck: "false" });
  return form({ class: "panel inline-form", "aria-labelledby": "claim-title" }, (event) => act(event.target, output, async () => {
    await ctx.api.post("/v1/devices", { id: id.input.value.trim() });
    id.input.value = "";
    await ctx.reloadDevices();
    fill(output, "Claimed.");
  }),
  h("h2", { id: "claim-title" }, "Claim a device"),
  id.label, id.input, h("button", { type: "submit" }, "Claim"), output);
}

function publishForm(ctx) {
  const output = h("output", { class: "result" });
  const name = field("Event name", { name: "name", required: true, maxlength: 63, autocomplete: "off", spellcheck: "false" });
  const data = field("Data", { name: "data", autocomplete: "off" });
  const privateId = "publish-private";
  const isPrivate = h("input", { type: "checkbox", id: privateId, name: "private", checked: true });
  return form({ class: "panel publish", "aria-labelledby": "publish-title" }, (event) => act(event.target, output, async () => {
    await ctx.api.post("/v1/devices/events", {
      name: name.input.value, data: data.input.value, private: isPrivate.checked,
    });
    fill(output, `Published ${name.input.value}.`);
  }),
  h("h2", { id: "publish-title" }, "Publish an event"),
  name.label, name.input, data.label, data.input,
  h("div", { class: "check" }, isPrivate, h("label", { for: privateId }, "Private (only your devices and streams see it)")),
  h("button", { type: "submit" }, "Publish"), output);
}

export function homeView(ctx) {
  const devicesBox = h("div");
  const unclaimedBox = h("div");
  const log = eventLogView(ctx.log, {
    title: ctx.admin ? "Events (all devices)" : "Events from your devices",
    label: "log",
    source: (e) => ctx.deviceName(e.coreid),
  });

  function renderDevices() {
    const all = [...ctx.devices.values()].sort((a, b) =>
      (a.name || a.id).localeCompare(b.name || b.id));
    const owned = ctx.admin ? all.filter((d) => d.owner) : all;
    fill(devicesBox, devicesTable(owned, ctx.admin));
    if (ctx.admin) fill(unclaimedBox, unclaimedPanel(ctx, all.filter((d) => !d.owner)));
  }

  renderDevices();
  log.setState(STREAM_STATES[ctx.streamState] || ctx.streamState);
  const unlisten = [
    ctx.listen("devices", renderDevices),
    ctx.listen("event", () => log.refresh()),
    ctx.listen("stream", (state) => log.setState(STREAM_STATES[state] || state)),
  ];
  const ticker = setInterval(renderDevices, 10000); // keep "last heard" fresh

  const element = h("div", { class: "home" },
    h("h1", { class: "sr-only" }, "Devices and events"),
    h("div", { class: "column" },
      h("section", { class: "panel", "aria-labelledby": "devices-title" },
        h("h2", { id: "devices-title" }, ctx.admin ? "Devices (all users)" : "Your devices"),
        devicesBox),
      unclaimedBox,
      claimForm(ctx)),
    h("div", { class: "column" }, log.element, publishForm(ctx)));
  return {
    element,
    title: "Devices",
    dispose() {
      clearInterval(ticker);
      unlisten.forEach((f) => f());
    },
  };
}
