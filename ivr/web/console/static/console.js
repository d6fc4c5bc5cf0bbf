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
  live(path, onMessage) {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
    let delay = 500;
    const open = () => {
      const ws = new WebSocket(url);
      ws.onmessage = (event) => { delay = 500; onMessage(JSON.parse(event.data)); };
      ws.onclose = () => { setTimeout(open, delay); delay = Math.min(delay * 2, 10000); };
    };
    open();
  },
  text(el, value) { el.textContent = value == null ? "" : String(value); },
};
