// Webhooks: the caller's hooks (API.md §6), a new one, deleting one.  The
// answers of deliveries arrive as hook-sent / hook-response / hook-error
// events, which the live event log on the devices page shows.

import { act, fill, field, form, h, when } from "./dom.js";

const METHODS = ["POST", "GET", "PUT", "DELETE"];

export function webhooksView(ctx) {
  const api = ctx.api;
  const list = h("div");
  const listOutput = h("output", { class: "result" });

  async function refresh() {
    const hooks = await api.get("/v1/webhooks");
    fill(list, hooks.length ? h("div", { class: "table-wrap" }, h("table", { class: "webhooks" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Event prefix"), h("th", { scope: "col" }, "Request"),
        h("th", { scope: "col", class: "wide" }, "Device"), h("th", { scope: "col", class: "wide" }, "Created"),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      h("tbody", {}, hooks.map(row)))) : h("p", { class: "empty" }, "No webhooks."));
  }

  function row(hook) {
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete webhook ${hook.id}` }, "Delete");
    remove.addEventListener("click", () => act(remove, listOutput, async () => {
      await api.del(`/v1/webhooks/${encodeURIComponent(hook.id)}`);
      await refresh();
      fill(listOutput, "Webhook deleted.");
    }));
    const device = hook.deviceID ? (ctx.devices.get(hook.deviceID)?.name || hook.deviceID) : "any of yours";
    return h("tr", { "data-webhook": hook.id },
      h("td", {}, h("code", {}, hook.event), hook.name && h("div", { class: "id" }, hook.name)),
      h("td", {}, h("code", {}, `${hook.requestType} ${hook.url}`)),
      h("td", { class: "wide" }, device),
      h("td", { class: "wide" }, when(hook.created_at)),
      h("td", {}, remove));
  }

  const event = field("Event name prefix", { name: "event", required: true, maxlength: 63, autocomplete: "off", spellcheck: "false" });
  const url = field("URL (templates such as {{PARTICLE_EVENT_NAME}} allowed in the path and query)",
    { name: "url", type: "url", required: true, placeholder: "http://192.168.1.20:8123/hook", spellcheck: "false" });
  const method = field("Method", { tag: "select", name: "requestType" });
  for (const name of METHODS) method.input.append(h("option", { value: name }, name));
  const device = field("Only from device (id or name; empty: any of yours)", { name: "deviceID", autocomplete: "off", spellcheck: "false" });
  const json = field("JSON body template (optional)", { tag: "textarea", name: "json", rows: 3, spellcheck: "false",
    placeholder: '{"value": "{{{PARTICLE_EVENT_VALUE}}}"}' });
  const output = h("output", { class: "result" });
  const create = form({ class: "stacked" }, (submitted) => act(submitted.target, output, async () => {
    const created = await api.post("/v1/webhooks", {
      event: event.input.value, url: url.input.value.trim(), requestType: method.input.value,
      deviceID: device.input.value.trim() || undefined, json: json.input.value.trim() || undefined,
    });
    fill(output, `Created webhook ${created.id}.`);
    event.input.value = "";
    url.input.value = "";
    device.input.value = "";
    json.input.value = "";
    await refresh();
  }),
  event.label, event.input, url.label, url.input, method.label, method.input,
  device.label, device.input, json.label, json.input,
  h("button", { type: "submit" }, "Create webhook"), output);

  act(list, listOutput, refresh);
  return {
    element: h("section", { class: "panel webhooks-view", "aria-labelledby": "webhooks-title" },
      h("h1", { id: "webhooks-title" }, "Webhooks"),
      h("p", { class: "hint" }, "Each event of yours whose name starts with a hook's prefix is sent to its URL; ",
        "the answer comes back as hook-response/<event>/0… events, failures as hook-error/<event>/0."),
      list, listOutput,
      h("h2", {}, "New webhook"), create),
    title: "Webhooks",
  };
}
