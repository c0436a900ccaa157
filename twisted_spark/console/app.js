// The console's shell: session, login/logout, the shared device list and
// event stream, and the hash router that shows one view at a time.
//
// A view is a function (ctx, ...routeArgs) returning {element, title,
// dispose?}; it reads and changes the server only through ctx.api.

import { Api, login } from "./api.js";
import { deviceView } from "./device.js";
import { fill, form, h, act } from "./dom.js";
import { EventLog } from "./eventlog.js";
import { homeView } from "./home.js";
import { tokensView } from "./tokens.js";
import { usersView } from "./users.js";
import { webhooksView } from "./webhooks.js";

const STORAGE_KEY = "twisted-spark.session";
/** The server root: the directory of this page (works behind a path prefix too). */
const BASE = new URL("./", document.baseURI);

/** Routes: hash pattern, view, whether only administrators see it. */
const ROUTES = [
  [/^#?\/?$/, homeView, false],
  [/^#\/devices\/([^/]+)$/, deviceView, false],
  [/^#\/tokens$/, tokensView, false],
  [/^#\/users$/, usersView, true],
  [/^#\/webhooks$/, webhooksView, false],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");
const notice = document.getElementById("notice");

let ctx = null; // the logged-in session, or null
let current = null; // the view on screen

function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
  } catch {
    return null;
  }
}

function say(text, kind = "info") {
  notice.hidden = !text;
  notice.className = `notice ${kind}`;
  fill(notice, text || "");
}

/** Everything a view needs: the API, who is logged in, devices, the main event log. */
class Context {
  constructor(api, username) {
    this.api = api;
    this.username = username;
    this.admin = false;
    this.devices = new Map();
    this.log = new EventLog(500);
    this.streamState = "connecting";
    this.listeners = { devices: new Set(), event: new Set(), stream: new Set() };
    this.stream = null;
    this.reloading = null;
  }

  /** fn(arg) on "devices" (list changed), "event" (main stream), "stream" (its state). */
  listen(kind, fn) {
    this.listeners[kind].add(fn);
    return () => this.listeners[kind].delete(fn);
  }

  emit(kind, arg) {
    for (const fn of [...this.listeners[kind]]) fn(arg);
  }

  deviceName(id) {
    if (id === "api") return "API";
    const device = this.devices.get(id);
    return (device && device.name) || id;
  }

  async reloadDevices() {
    if (!this.reloading) {
      this.reloading = this.api.get("/v1/devices").then((list) => {
        this.devices = new Map(list.map((d) => [d.id, d]));
        this.emit("devices");
      }).finally(() => { this.reloading = null; });
    }
    return this.reloading;
  }

  /** The caller's events: feeds the log, and keeps online/last-heard live. */
  openStream() {
    this.stream = this.api.stream("/v1/devices/events", {
      onEvent: (event) => this.received(event),
      onState: (state) => { this.streamState = state; this.emit("stream", state); },
      onError: (error) => say(`The event stream stopped: ${error.message}`, "error"),
    });
  }

  received(event) {
    this.log.add(event);
    const device = this.devices.get(event.coreid);
    if (device) {
      device.last_heard = event.published_at;
      if (event.name === "spark/status") {
        device.connected = event.data === "online";
        // A device coming online brings its platform, address and firmware: list again.
        if (device.connected) this.reloadDevices().catch(() => {});
      }
      this.emit("devices");
    } else if (event.name === "spark/status" && event.coreid !== "api") {
      this.reloadDevices().catch(() => {}); // a device we have not listed yet
    }
    this.emit("event", event);
  }

  close() {
    if (this.stream) this.stream.close();
    for (const set of Object.values(this.listeners)) set.clear();
  }
}

// -- session ----------------------------------------------------------------------

function loginView(message) {
  const output = h("output", { class: "result", role: "alert" }, message || "");
  const user = h("input", {
    id: "login-username", name: "username", autocomplete: "username", required: true,
    autocapitalize: "none", spellcheck: "false",
  });
  const password = h("input", {
    id: "login-password", name: "password", type: "password",
    autocomplete: "current-password", required: true,
  });
  const el = form({ class: "panel login", "aria-labelledby": "login-title" }, async (event) => {
    const token = await act(event.target, output, () => login(BASE, user.value.trim(), password.value));
    if (!token) return;
    password.value = "";
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({
      token: token.access_token, username: user.value.trim().toLowerCase(),
    }));
    start();
  },
  h("h1", { id: "login-title" }, "Log in"),
  h("p", { class: "hint" }, "Your account on this server. No account yet? An administrator ",
    "creates one here, or with ", h("code", {}, "python -m twisted_spark users add NAME"), "."),
  h("label", { for: user.id }, "Username"), user,
  h("label", { for: password.id }, "Password"), password,
  h("button", { type: "submit", class: "primary" }, "Log in"),
  output);
  return { element: el, title: "Log in", focus: user };
}

function showLogin(message) {
  nav.hidden = true;
  account.hidden = true;
  const view = loginView(message);
  show(view);
  view.focus.focus();
}

/** Forget the session locally (the token is already gone or unusable). */
function stop() {
  if (current && current.dispose) current.dispose();
  current = null;
  if (ctx) ctx.close();
  ctx = null;
  sessionStorage.removeItem(STORAGE_KEY);
}

/** A Bearer call got 401: the token expired or was revoked. */
function expired(error) {
  if (!ctx) return;
  stop();
  say("");
  showLogin(`Your session has ended: ${error.message} Please log in again.`);
}

async function logout() {
  const session = ctx;
  if (!session) return;
  try {
    await session.api.del("/v1/access_tokens/current");
    stop();
    say("You are logged out; the access token was deleted.");
  } catch (error) {
    stop();
    if (error.status !== 401) say(`Logged out here, but the server said: ${error.message}`, "error");
  }
  showLogin();
}

async function start() {
  const session = saved();
  if (!session || !session.token) {
    showLogin();
    return;
  }
  say("");
  const api = new Api(BASE, session.token, (error) => expired(error));
  const context = new Context(api, session.username);
  ctx = context;
  try {
    const me = await api.get("/v1/user");
    context.username = me.username;
    context.admin = await api.get("/v1/users").then(() => true, () => false);
    await context.reloadDevices();
  } catch (error) {
    if (ctx === context) {
      stop();
      showLogin(error.status === 401 ? "" : error.message);
    }
    return;
  }
  if (ctx !== context) return;
  context.openStream();
  fill(document.getElementById("whoami"), context.username, context.admin ? " (administrator)" : "");
  document.getElementById("nav-users").hidden = !context.admin;
  nav.hidden = false;
  account.hidden = false;
  route();
}

// -- routing ----------------------------------------------------------------------

function show(view) {
  if (current && current.dispose) current.dispose();
  current = view;
  fill(main, view.element);
  document.title = `${view.title} · twisted-spark`;
}

function route() {
  if (!ctx) return;
  const hash = location.hash || "#/";
  for (const [pattern, makeView, adminOnly] of ROUTES) {
    const match = hash.match(pattern);
    if (match && (!adminOnly || ctx.admin)) {
      show(makeView(ctx, ...match.slice(1).map(decodeURIComponent)));
      for (const link of nav.querySelectorAll("a")) {
        const here = link.getAttribute("href") === hash || (link.getAttribute("href") === "#/" && hash.startsWith("#/devices"));
        if (here) link.setAttribute("aria-current", "page");
        else link.removeAttribute("aria-current");
      }
      main.focus({ preventScroll: true });
      return;
    }
  }
  show({ element: h("section", { class: "panel" }, h("h1", {}, "Not found"),
    h("p", {}, h("a", { href: "#/" }, "Back to the devices"))), title: "Not found" });
}

window.addEventListener("hashchange", route);
document.getElementById("logout").addEventListener("click", logout);
start();
