// Server-Sent Events read with fetch() instead of EventSource.
//
// The Spark streams name every event after the event itself ("event:
// temperature"), and EventSource only delivers names it was told in advance;
// reading the stream with fetch() delivers every name, and lets the token
// travel in the Authorization header instead of the URL.

/** Incremental parser of the text/event-stream format: feed() text, get events. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.name = "";
    this.data = [];
  }

  feed(text) {
    this.buffer += text;
    let end = this.buffer.indexOf("\n");
    while (end >= 0) {
      let line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      this.line(line);
      end = this.buffer.indexOf("\n");
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent(this.name || "message", this.data.join("\n"));
      this.name = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // a comment (":ok" first, then keep-alives)
    const colon = line.indexOf(":");
    const fieldName = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (fieldName === "event") this.name = value;
    else if (fieldName === "data") this.data.push(value);
  }
}

/**
 * A Spark event from one SSE frame: {name, data, ttl, published_at, coreid}.
 * Data that is not the usual JSON object is kept as it came.
 */
export function sparkEvent(name, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") {
      return {
        name,
        data: body.data ?? null,
        ttl: body.ttl,
        published_at: body.published_at || new Date().toISOString(),
        coreid: body.coreid || "",
      };
    }
  } catch {
    // not JSON: fall through
  }
  return { name, data: text, published_at: new Date().toISOString(), coreid: "" };
}

/** Delay before reconnect attempt n (1, 2, 4 ... 30 s). */
export function backoff(attempt) {
  return Math.min(30000, 1000 * 2 ** Math.min(attempt, 5));
}

/**
 * One event stream that reconnects (with backoff) when the connection fails
 * or the server ends it.  An answer other than 200 (the API's JSON error)
 * stops it and goes to onError(response).  onState hears "connecting",
 * "open", "retrying" and "closed".
 */
export class EventStream {
  constructor(url, headers, { onEvent, onState = () => {}, onError = () => {} }) {
    this.url = url;
    this.headers = headers;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onError = onError;
    this.closed = false;
    this.attempt = 0;
    this.controller = null;
    this.timer = null;
    this.wake = null;
    this.run();
  }

  async run() {
    while (!this.closed) {
      this.onState(this.attempt ? "retrying" : "connecting");
      this.controller = new AbortController();
      let response;
      try {
        response = await fetch(this.url, {
          headers: { ...this.headers, Accept: "text/event-stream" },
          signal: this.controller.signal,
          cache: "no-store",
        });
      } catch {
        if (this.closed) return;
        await this.pause();
        continue;
      }
      if (!response.ok) {
        this.closed = true;
        this.onState("closed");
        this.onError(response);
        return;
      }
      this.attempt = 0;
      this.onState("open");
      await this.read(response);
      if (this.closed) return;
      await this.pause(); // the server closed the stream (restart, token revoked...)
    }
  }

  async read(response) {
    const parser = new SseParser((name, text) => this.onEvent(sparkEvent(name, text)));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch {
      // aborted or the connection broke: the caller decides whether to retry
    }
  }

  pause() {
    const delay = backoff(this.attempt);
    this.attempt += 1;
    this.onState("retrying");
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, delay);
    });
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.wake) this.wake();
    if (this.controller) this.controller.abort();
    this.onState("closed");
  }
}
