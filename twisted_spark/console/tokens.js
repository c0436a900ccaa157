// Access tokens: list and delete (the API wants the password, as HTTP Basic),
// and create new ones (the password grant).  The password is kept only while
// this view is open.

import { login } from "./api.js";
import { act, fill, field, form, h, when } from "./dom.js";

const LIFETIMES = [
  ["3600", "1 hour"], ["86400", "1 day"], ["2592000", "30 days"], ["7776000", "90 days"],
  ["0", "never expires"],
];

export function tokensView(ctx) {
  const api = ctx.api;
  let password = null;
  const list = h("div");
  const listOutput = h("output", { class: "result" });
  const created = h("div", { class: "created", "aria-live": "polite" });

  const passwordField = field("Your password", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const unlock = form({ class: "inline-form" }, (event) => act(event.target, listOutput, async () => {
    password = passwordField.input.value;
    try {
      await refresh();
    } catch (error) {
      password = null;
      throw error;
    }
    passwordField.input.value = "";
    unlock.hidden = true;
    manage.hidden = false;
  }), passwordField.label, passwordField.input, h("button", { type: "submit" }, "Show tokens"));

  const credentials = () => ({ username: ctx.username, password });

  async function refresh() {
    const tokens = await api.request("GET", "/v1/access_tokens", undefined, credentials());
    fill(list, tokens.length ? h("div", { class: "table-wrap" }, h("table", { class: "tokens" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Token"), h("th", { scope: "col" }, "Client"),
        h("th", { scope: "col" }, "Expires"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      h("tbody", {}, tokens.map((t) => row(t))))) : h("p", { class: "empty" }, "No tokens."));
  }

  function row(t) {
    const mine = t.token === api.token;
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete token ${t.token.slice(0, 8)}` }, "Delete");
    remove.addEventListener("click", () => act(remove, listOutput, async () => {
      await api.request("DELETE", `/v1/access_tokens/${encodeURIComponent(t.token)}`, undefined, credentials());
      if (mine) {
        ctx.api.onUnauthorized(new Error("you deleted this console's token."));
        return;
      }
      await refresh();
      fill(listOutput, "Token deleted.");
    }));
    return h("tr", { "data-token": t.token.slice(0, 8) },
      h("td", {}, h("code", {}, `${t.token.slice(0, 8)}…`), " ",
        mine && h("span", { class: "tag" }, "this console")),
      h("td", {}, t.client),
      h("td", {}, t.expires_at ? when(t.expires_at) : "never"),
      h("td", {}, remove));
  }

  const lifetime = field("Lifetime", { tag: "select", name: "expires_in" });
  for (const [seconds, text] of LIFETIMES) lifetime.input.append(h("option", { value: seconds }, text));
  lifetime.input.value = "7776000";
  const createOutput = h("output", { class: "result" });
  const create = form({ class: "inline-form" }, (event) => act(event.target, createOutput, async () => {
    const answer = await createToken(lifetime.input.value);
    fill(created,
      h("p", {}, "New token (copy it now; it is shown in full only here):"),
      h("code", { class: "token" }, answer.access_token));
    await refresh();
  }), lifetime.label, lifetime.input, h("button", { type: "submit" }, "Create token"), createOutput);

  function createToken(seconds) {
    return login(api.base, ctx.username, password, Number(seconds));
  }

  const manage = h("div", { hidden: true },
    list,
    h("h3", {}, "Create a token"),
    create, created);

  const element = h("section", { class: "panel tokens-view", "aria-labelledby": "tokens-title" },
    h("h1", { id: "tokens-title" }, "Access tokens"),
    h("p", { class: "hint" },
      "Tokens let programs (particle-cli, scripts) use the API as you. ",
      "Listing, creating and deleting them needs your password."),
    unlock, listOutput, manage);
  return {
    element,
    title: "Access tokens",
    dispose() { password = null; },
  };
}
