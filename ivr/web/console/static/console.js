// Small helpers shared by the console pages: CSRF-aware fetch and a self-reconnecting WebSocket.
"use strict";
const ivr = {
  csrf() { return document.querySelector('meta[name="csrf-token"]').content; },
  async post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": ivr.csrf() },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    return data;
  },
  // A WebSocket that reopens itself: exponential backoff with jitter (0.5 s .. 15 s), reset by the
  // first message of a new connection; a connection silent for three server heartbeats
  // (heartbeat_seconds in a message) is taken for dead and replaced. opts.onOpen() / opts.onDown(ms)
  // tell the page (ms: the wait before the next try).
  live(path, onMessage, opts = {}) {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
    const first = 500, most = 15000;
    let failures = 0, silentMs = 45000, watchdog = null, current = null;
    const retry = () => {
      const ceiling = Math.min(most, first * 2 ** failures);
      failures += 1;
      const wait = ceiling / 2 + Math.random() * ceiling / 2;  // jitter: not every page at once
      if (opts.onDown) opts.onDown(wait);
      setTimeout(open, wait);
    };
    const drop = (ws) => {  // detach first: a dead socket may take minutes to report its close
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (error) { /* already closed */ }
      if (ws === current) { current = null; clearTimeout(watchdog); retry(); }
    };
    const arm = (ws) => { clearTimeout(watchdog); watchdog = setTimeout(() => drop(ws), silentMs); };
    const open = () => {
      const ws = current = new WebSocket(url);
      ws.onopen = () => { arm(ws); if (opts.onOpen) opts.onOpen(); };
      ws.onmessage = (event) => {
        failures = 0;
        const data = JSON.parse(event.data);
        if (data.heartbeat_seconds) silentMs = data.heartbeat_seconds * 3000;
        arm(ws);
        onMessage(data);
      };
      ws.onclose = () => drop(ws);
    };
    open();
  },
  text(el, value) { el.textContent = value == null ? "" : String(value); },
};
