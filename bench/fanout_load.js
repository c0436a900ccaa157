// Event fan-out load generator in Node (bench_fanout.py run --client node):
// N SSE streams and one publisher in a single process, so the generator
// parses 80 000 events/s without being the bottleneck a Python one is.
// Usage: node fanout_load.js URL TOKEN STREAMS EVENTS RATE CONCURRENCY TIMEOUT_S
// Prints one JSON line (the same keys as bench_fanout.py's Python generator).
"use strict";
const http = require("http");
const { performance } = require("perf_hooks");

const [url, token, streamsArg, eventsArg, rateArg, concArg, timeoutArg] = process.argv.slice(2);
const base = new URL(url);
const STREAMS = +streamsArg, EVENTS = +eventsArg, RATE = +rateArg, CONC = +concArg;
const name = "bench/" + Math.random().toString(16).slice(2, 10);
const auth = token ? { Authorization: "Bearer " + token } : {};
const latencies = [];
let received = 0, lastReceive = 0, publishErrors = 0;
const sockets = [];

function openStream() {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: base.hostname, port: base.port, path: "/v1/events/" + name,
                           headers: auth, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error("GET /v1/events " + res.statusCode));
      sockets.push(req.socket);
      let buffer = "";
      let ready = false;
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        const now = performance.now();
        if (!ready) { ready = true; resolve(); }
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of frame.split("\n")) {
            if (line.startsWith("data: ")) {
              const sent = +JSON.parse(line.slice(6)).data.split(" ")[1];
              latencies.push(now - sent);
              received++;
              lastReceive = now;
            }
          }
        }
      });
      res.on("error", () => {});
    });
    req.on("error", reject);
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONC });
function publish(seq) {
  return new Promise((resolve) => {
    const body = new URLSearchParams({ name, data: `${seq} ${performance.now().toFixed(3)}`,
                                       private: "false" }).toString();
    const req = http.request({ host: base.hostname, port: base.port, method: "POST",
      path: "/v1/devices/events", agent,
      headers: { ...auth, "content-type": "application/x-www-form-urlencoded",
                 "content-length": Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on("end", () => { if (res.statusCode !== 200) publishErrors++; resolve(); });
    });
    req.on("error", () => { publishErrors++; resolve(); });
    req.end(body);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  for (let i = 0; i < STREAMS; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, STREAMS - i) }, openStream));
  }
  process.stdout.write("streams open\n");
  const expected = EVENTS * STREAMS;
  const started = performance.now();
  let next = 0;
  const interval = RATE ? 1000 / RATE : 0;
  async function publisher() {
    while (next < EVENTS) {
      const seq = next++;
      if (interval) {
        const delay = started + seq * interval - performance.now();
        if (delay > 1) await sleep(delay);
      }
      await publish(seq);
    }
  }
  await Promise.all(Array.from({ length: CONC }, publisher));
  const published = performance.now();
  const deadline = published + 1000 * +timeoutArg;
  while (received < expected && performance.now() < deadline) await sleep(10);
  const end = lastReceive || performance.now();
  latencies.sort((a, b) => a - b);
  const pct = (f) => latencies.length ?
    latencies[Math.min(latencies.length - 1, Math.round(f * (latencies.length - 1)))] : NaN;
  const elapsed = (end - started) / 1000;
  process.stdout.write(JSON.stringify({
    streams: STREAMS, events: EVENTS,
    published_per_s: +(EVENTS / ((published - started) / 1000)).toFixed(1),
    delivered: received, expected, missing: expected - received, publish_errors: publishErrors,
    deliveries_per_s: +(received / elapsed).toFixed(1),
    latency_ms_p50: +pct(0.5).toFixed(2), latency_ms_p99: +pct(0.99).toFixed(2),
    latency_ms_max: +(latencies.length ? latencies[latencies.length - 1] : NaN).toFixed(2),
    seconds: +elapsed.toFixed(3),
  }) + "\n");
  for (const s of sockets) s.destroy();
  agent.destroy();
})().catch((e) => { console.error(e); process.exit(1); });
