// Small helpers shared by the console pages: CSRF-aware fetch, a self-reconnecting WebSocket, and
// ivr.fmt: the browser's copy of ivr/web/console/formats.py (same words, same business time zone,
// read from <meta name="business-tz">; never the browser's own zone).
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
    if (!response.ok) throw ivr.apiError(data, response);
    return data;
  },
  // An API error carries its stable id; pages show the Russian sentence for it (labels.API_ERROR_LABELS).
  apiError(data, response) {
    const error = new Error((data.error && data.error.message) || response.statusText);
    error.id = (data.error && data.error.id) || (response.status === 401 ? "unauthorized" : "");
    return error;
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

ivr.fmt = (() => {
  const NBSP = "\u00a0";
  const MONTHS = ["января", "февраля", "марта", "апреля", "мая", "июня",
                  "июля", "августа", "сентября", "октября", "ноября", "декабря"];
  const zone = () => {
    const meta = document.querySelector('meta[name="business-tz"]');
    return (meta && meta.content) || "Europe/Moscow";
  };
  // A moment's wall-clock parts in the business zone; a naive ISO string is UTC (as on the server).
  const parts = (value) => {
    if (value == null || value === "") return null;
    let moment = value;
    if (typeof value === "string" && !/(Z|[+-]\d\d:?\d\d)$/.test(value)) moment = value + "Z";
    const date = moment instanceof Date ? moment : new Date(moment);
    if (Number.isNaN(date.getTime())) return null;
    const out = {};
    const format = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone(), year: "numeric", month: "numeric", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    });
    for (const part of format.formatToParts(date)) out[part.type] = part.value;
    return out;
  };
  const dayWords = (y, m, d) => Number(d) + " " + MONTHS[Number(m) - 1] + " " + Number(y);
  const fmt = {
    day(value) {
      const plain = typeof value === "string" && /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
      if (plain) return dayWords(plain[1], plain[2], plain[3]);
      const p = parts(value);
      return p ? dayWords(p.year, p.month, p.day) : "";
    },
    time(value, seconds = true) {
      const p = parts(value);
      return p ? p.hour + ":" + p.minute + (seconds ? ":" + p.second : "") : "";
    },
    when(value, seconds = false) {
      const p = parts(value);
      return p ? dayWords(p.year, p.month, p.day) + ", " + fmt.time(value, seconds) : "";
    },
    money(value) {
      if (value == null || value === "") return "";
      const number = Number(value);
      if (Number.isNaN(number)) return String(value);
      const [whole, cents] = Math.abs(number).toFixed(2).split(".");
      return (number < 0 ? "-" : "") + whole.replace(/\B(?=(\d{3})+(?!\d))/g, NBSP) + "," + cents + NBSP + "₽";
    },
    // formats.duration_text: m:ss, or h:mm:ss from an hour; "—" when unknown.
    duration(seconds) {
      if (seconds == null || !Number.isFinite(Number(seconds))) return "—";
      const total = Math.round(Number(seconds));
      const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
      const two = (n) => String(n).padStart(2, "0");
      return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
    },
  };
  return fmt;
})();
