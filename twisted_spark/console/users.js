// Users (administrators only): the accounts on this server, and a new one.

import { act, fill, field, form, h } from "./dom.js";

export function usersView(ctx) {
  const api = ctx.api;
  const list = h("div");
  const output = h("output", { class: "result" });

  async function refresh() {
    const users = await api.get("/v1/users");
    fill(list, h("div", { class: "table-wrap" }, h("table", { class: "users" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Username"), h("th", { scope: "col" }, "Administrator"))),
      h("tbody", {}, users.map((u) => h("tr", {},
        h("td", {}, u.username), h("td", {}, u.admin ? "yes" : "no")))))));
  }

  const username = field("Username", { name: "username", required: true, autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
  const password = field("Password (8 characters or more)", { type: "password", name: "password", required: true, minlength: 8, autocomplete: "new-password" });
  const adminId = "new-user-admin";
  const admin = h("input", { type: "checkbox", id: adminId, name: "admin" });
  const create = form({ class: "stacked" }, (event) => act(event.target, output, async () => {
    await api.post("/v1/users", {
      username: username.input.value.trim(), password: password.input.value, admin: admin.checked,
    });
    fill(output, `Created ${username.input.value.trim().toLowerCase()}.`);
    username.input.value = "";
    password.input.value = "";
    admin.checked = false;
    await refresh();
  }),
  username.label, username.input, password.label, password.input,
  h("div", { class: "check" }, admin, h("label", { for: adminId }, "Administrator (sees and controls every device)")),
  h("button", { type: "submit" }, "Create user"), output);

  act(list, output, refresh);
  return {
    element: h("section", { class: "panel users-view", "aria-labelledby": "users-title" },
      h("h1", { id: "users-title" }, "Users"), list,
      h("h2", {}, "Add a user"), create),
    title: "Users",
  };
}
