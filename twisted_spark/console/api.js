// The REST API as the console uses it: the same public contract as any client.
//
// Every call sends the Bearer token (or HTTP Basic where the API asks for the
// password); failures become ApiError carrying the API's error_description.
// A 401 on a Bearer call means the token expired or was revoked: the
// onUnauthorized callback sends the user back to the login form.

import { EventStream } from "./sse.js";

/** The OAuth client the console logs in as (the seed's default client). */
const CLIENT = "spark:spark";
/** Lifetime the console asks for its tokens: a working day, not the 90-day default. */
export const SESSION_SECONDS = 8 * 3600;

export class ApiError extends Error {
  constructor(status, body) {
    const text = body && (body.error_description || body.error || (body.errors || [])[0]);
    super(text || (status ? `The server answered ${status}.` : "The server could not be reached."));
    this.status = status;
    this.body = body;
  }
}

/** "Basic ..." for a username and password (UTF-8, as the server decodes it). */
export function basic(username, password) {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

/** A request body: URLSearchParams for plain objects, FormData as it is. */
function encode(body) {
  if (body === undefined || body === null || body instanceof FormData) return body;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(body)) {
    if (value !== undefined && value !== null) params.append(key, String(value));
  }
  return params;
}

async function decode(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return response.text();
}

/** One HTTP call; resolves to the decoded body, rejects with ApiError. */
export async function call(url, { method = "GET", headers = {}, body } = {}) {
  let response;
  try {
    response = await fetch(url, { method, headers, body: encode(body), cache: "no-store" });
  } catch {
    throw new ApiError(0, null);
  }
  const result = await decode(response);
  if (!response.ok) throw new ApiError(response.status, result);
  return result;
}

/** The password grant: {access_token, expires_in}; expiresIn 0 = never expires. */
export function login(base, username, password, expiresIn = SESSION_SECONDS) {
  return call(new URL("oauth/token", base), {
    method: "POST",
    headers: { Authorization: basic(...CLIENT.split(":")) },
    body: { grant_type: "password", username, password, expires_in: expiresIn },
  });
}

export class Api {
  /**
   * @param base the server's root URL (the console page's directory)
   * @param token the access token
   * @param onUnauthorized called with the ApiError when a Bearer call gets 401
   */
  constructor(base, token, onUnauthorized) {
    this.base = base;
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  url(path) {
    return new URL(path.replace(/^\//, ""), this.base);
  }

  get bearer() {
    return { Authorization: `Bearer ${this.token}` };
  }

  /** method, path, optional body; options.password switches to Basic auth. */
  async request(method, path, body, { username, password } = {}) {
    const headers = password === undefined ? this.bearer : { Authorization: basic(username, password) };
    try {
      return await call(this.url(path), { method, headers, body });
    } catch (error) {
      if (error.status === 401 && password === undefined) this.onUnauthorized(error);
      throw error;
    }
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, body); }
  put(path, body) { return this.request("PUT", path, body); }
  del(path, body) { return this.request("DELETE", path, body); }

  /** A device path: /v1/devices/<id>[/rest], every segment escaped. */
  device(id, ...rest) {
    return ["/v1/devices", id, ...rest].map((s, i) => (i ? encodeURIComponent(s) : s)).join("/");
  }

  /**
   * Upload a FormData with PUT through XMLHttpRequest, the one browser API
   * that reports upload progress: onProgress(sentBytes, totalBytes).
   */
  upload(path, formData, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", this.url(path));
      xhr.setRequestHeader("Authorization", this.bearer.Authorization);
      xhr.responseType = "text";
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve(body);
          return;
        }
        const error = new ApiError(xhr.status, body);
        if (xhr.status === 401) this.onUnauthorized(error);
        reject(error);
      });
      xhr.addEventListener("error", () => reject(new ApiError(0, null)));
      xhr.send(formData);
    });
  }

  /** An EventStream on path (token in the header); 401 ends the session. */
  stream(path, { onEvent, onState, onError = () => {} }) {
    return new EventStream(this.url(path), this.bearer, {
      onEvent,
      onState,
      onError: async (response) => {
        let body = null;
        try {
          body = await response.json();
        } catch {
          body = null;
        }
        const error = new ApiError(response.status, body);
        if (response.status === 401) this.onUnauthorized(error);
        else onError(error);
      },
    });
  }
}
