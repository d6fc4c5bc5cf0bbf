// The operator screen: live card from the WebSocket feed, orders (idempotent), call-back tasks.
// Everything coming from the server is put on the page with textContent (never innerHTML).
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("operator-data").textContent);
  const labels = data.labels;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value == null) continue;
      if (name === "className") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // crypto.randomUUID exists only in secure contexts (HTTPS, localhost); a console on plain HTTP in
  // the office network still needs unique keys, so fall back to getRandomValues (available everywhere).
  const uuid = () => (crypto.randomUUID ? crypto.randomUUID()
    : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)));
  const customerHref = (id) => "/customers/" + encodeURIComponent(id);
  // Money and moments as every page writes them (ivr.fmt: business time zone, Russian words).
  const money = ivr.fmt.money;
  const when = (iso) => ivr.fmt.when(iso);
  // What the user reads for a failed request: the sentence for its error id, never the server's text.
  const problem = (error) => "Ошибка: " + ((labels.errors || {})[error.id] || labels.unknown_error);
  // The server puts each step's words on the card (ivr/web/console/timeline_text.py: the one
  // renderer of timeline events), so the live card reads like the call page.
  const pathStep = (step) => step.line || [step.kind || "", ""];

  // A caller the robot did not know: make a customer with the number, or attach it to one found by
  // search (the same as templates/_unknown_caller.html draws for the first card).
  function unknownCaller(call) {
    const box = el("div", { className: "unknown-caller" }, el("p", { className: "muted" }, "Клиент не определён."));
    if (!call.caller_number) {
      box.append(el("p", null, "Найдите клиента в ", el("a", { href: "/customers" }, "поиске клиентов"),
                    " или ", el("a", { href: "/customers/new" }, "заведите нового"), "."));
      return box;
    }
    const query = (name) => new URLSearchParams({ [name]: call.caller_number, call: call.call_id || "" }).toString();
    box.append(el("p", null,
      el("a", { className: "button", id: "new-customer-from-call", href: "/customers/new?" + query("number") },
         "Новый клиент с этим номером"), " ",
      el("a", { className: "button secondary", id: "attach-number-from-call", href: "/customers?" + query("attach") },
         "Найти клиента и привязать номер")));
    return box;
  }

  // --- orders ---------------------------------------------------------------------------------

  async function placeOrder(customerId, lines, key, callId, confirmDuplicate) {
    const response = await fetch("/api/v1/customers/" + encodeURIComponent(customerId) + "/orders", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": ivr.csrf(), "Idempotency-Key": key },
      body: JSON.stringify({ lines, call_id: callId || undefined, confirm_duplicate: confirmDuplicate || undefined }),
    });
    const body = await response.json().catch(() => ({}));
    // The customer has the same order from the last hours: ask, then place it under the same key
    // (declined: the error's sentence says why nothing was placed).
    if (response.status === 409 && body.error && body.error.id === "possible_duplicate" && !confirmDuplicate) {
      const question = (labels.errors || {}).possible_duplicate + " (" + body.error.order_id + ")";
      if (window.confirm(question)) return placeOrder(customerId, lines, key, callId, true);
    }
    if (!response.ok) throw ivr.apiError(body, response);
    return body;
  }

  const placedText = (result) =>
    "Заказ " + result.order.order_id + " оформлен, счёт " + result.invoice.number + ", сумма " +
    money(result.invoice.total) + (result.order.delivery_date ? ", доставка " + ivr.fmt.day(result.order.delivery_date) : "") +
    (result.created ? "" : " (уже был оформлен)");

  let currentCallId = data.card && data.card.call ? data.card.call.call_id : null;

  // One key per (call, order) shown: a double click, a retry or a redrawn card replays, never duplicates.
  const repeatKeys = new Map();
  function armRepeat(button) {
    const slot = (currentCallId || "") + "|" + button.dataset.order;
    if (!repeatKeys.has(slot)) repeatKeys.set(slot, uuid());
    button.dataset.key = repeatKeys.get(slot);
    button.addEventListener("click", async () => {
      const result = button.parentElement.querySelector(".repeat-result");
      const lines = JSON.parse(button.dataset.lines).map((l) => ({ sku: l.sku, quantity: l.quantity }));
      button.disabled = true;
      try {
        const placed = await placeOrder(button.dataset.customer, lines, button.dataset.key, currentCallId);
        ivr.text(result, placedText(placed));
        result.className = "repeat-result ok";
      } catch (error) {
        ivr.text(result, problem(error));
        result.className = "repeat-result bad";
        button.disabled = false; // the same key: retrying can never make a second order
      }
    });
  }

  const form = document.getElementById("order-form");
  const lineTable = document.getElementById("order-lines");
  const template = lineTable.querySelector(".order-line").cloneNode(true);
  const orderResult = document.getElementById("order-result");
  let formKey = uuid();
  let formDone = false;

  function bindRemove(row) {
    row.querySelector(".remove-line").addEventListener("click", () => {
      if (lineTable.querySelectorAll(".order-line").length > 1) row.remove();
    });
  }
  lineTable.querySelectorAll(".order-line").forEach(bindRemove);
  document.getElementById("add-line").addEventListener("click", () => {
    const row = template.cloneNode(true);
    lineTable.append(row);
    bindRemove(row);
  });
  // Changing the order after it was placed starts a new order (and a new key).
  form.addEventListener("input", () => {
    if (formDone) { formKey = uuid(); formDone = false; ivr.text(orderResult, ""); }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("place-order");
    const customerId = form.elements.customer_id.value.trim();
    const lines = [...lineTable.querySelectorAll(".order-line")].map((row) => ({
      sku: row.querySelector("select").value,
      quantity: parseInt(row.querySelector("input").value, 10),
    })).filter((l) => l.sku && l.quantity > 0);
    if (!customerId || !lines.length) { ivr.text(orderResult, "Укажите клиента и хотя бы одну строку."); return; }
    button.disabled = true;
    try {
      const placed = await placeOrder(customerId, lines, formKey, currentCallId);
      ivr.text(orderResult, placedText(placed));
      orderResult.className = "ok";
      formDone = true;
    } catch (error) {
      ivr.text(orderResult, problem(error));
      orderResult.className = "bad";
    } finally {
      button.disabled = false;
    }
  });

  // --- call-back tasks ------------------------------------------------------------------------

  document.querySelectorAll(".task-action").forEach((button) => {
    button.addEventListener("click", async () => {
      const cell = button.closest("td");
      const result = cell.querySelector(".task-result");
      cell.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        const task = await ivr.post("/api/v1/tasks/" + encodeURIComponent(button.dataset.taskId),
                                    { status: button.dataset.status });
        if (task.status === "open") {
          ivr.text(result, "не дозвонились, повтор " + when(task.due_at) + " (попыток: " + task.attempts + ")");
          cell.querySelectorAll("button").forEach((b) => { b.disabled = false; });
        } else {
          ivr.text(result, "закрыта");
          button.closest("tr").classList.add("muted");
        }
      } catch (error) {
        ivr.text(result, problem(error));
        cell.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    });
  });

  // --- the live card --------------------------------------------------------------------------

  function person(c) { return [c.last_name, c.first_name, c.patronymic].filter(Boolean).join(" "); }

  function renderCard(card) {
    const state = document.getElementById("call-state");
    state.className = "state-" + card.state;
    ivr.text(state, labels.states[card.state] || card.state);
    const body = document.getElementById("card-body");
    const parts = [];
    const call = card.call;
    currentCallId = call ? call.call_id : null;
    if (!call) {
      parts.push(el("p", { className: "muted" }, "Сейчас звонка нет. Карточка появится, когда зазвонит телефон."));
    } else {
      parts.push(el("p", null, "Номер: ", el("strong", { className: "caller" }, call.caller_number || "скрыт")));
      if (call.ivr_reason) {
        parts.push(el("p", null, "Почему у оператора: ", el("strong", { className: "reason" }, call.ivr_reason_text || call.ivr_reason || "")));
      }
      if (call.order_id) {
        parts.push(el("p", null, "Робот оформил в этом звонке заказ ", el("strong", { className: "call-order" }, call.order_id)));
      }
      if (call.lookup === "shared" && call.candidates && call.candidates.length) {
        const p = el("p", null, "Номер принадлежит клиентам: ");
        call.candidates.forEach((id, i) => {
          if (i) p.append(", ");
          p.append(el("a", { href: customerHref(id) }, id));
        });
        parts.push(p);
      }
      const c = card.customer;
      if (c) {
        parts.push(el("h2", null, el("a", { href: customerHref(c.customer_id) }, person(c))));
        parts.push(el("p", null, "Адрес: " + (c.address || "—")));
        parts.push(el("p", { className: "muted" }, "Телефоны: " + (c.phones || []).join(", ") + " · клиент " + c.customer_id));
        form.elements.customer_id.value = c.customer_id;
      } else {
        form.elements.customer_id.value = "";
        parts.push(unknownCaller(call));
      }
      if (card.ivr_path && card.ivr_path.length) {
        parts.push(el("h2", null, "Что было в меню робота"));
        const ol = el("ol", { className: "ivr-path" });
        for (const step of card.ivr_path) {
          const [who, text] = pathStep(step);
          ol.append(el("li", null, el("span", { className: "muted" }, who + ":"), " " + text));
        }
        parts.push(ol);
      }
      if (c && card.last_orders && card.last_orders.length) {
        parts.push(el("h2", null, "Последние заказы"));
        const table = el("table", { className: "last-orders" },
          el("tr", null, el("th", null, "Заказ"), el("th", null, "Дата"), el("th", null, "Доставка"), el("th", null, "Состав"),
             el("th", null, "Сумма"), el("th", null, "")));
        for (const order of card.last_orders) {
          const lines = el("td");
          for (const line of order.lines) lines.append(line.quantity + " × " + line.unit + " " + line.name, el("br"));
          const button = el("button", { type: "button", className: "repeat-order",
            dataset: { customer: c.customer_id, order: order.order_id, lines: JSON.stringify(order.lines) } }, "Повторить заказ");
          armRepeat(button);
          const status = order.status === "cancelled" ? el("span", { className: "bad" }, " отменён") : null;
          table.append(el("tr", null, el("td", null, order.order_id, status),
                          el("td", null, order.ordered_at_text || when(order.ordered_at)),
                          el("td", { className: "delivery" }, ivr.fmt.day(order.delivery_date) || "—"), lines,
                          el("td", null, order.total_text || money(order.total)),
                          el("td", null, button, el("span", { className: "repeat-result" }))));
        }
        parts.push(table);
      }
    }
    body.replaceChildren(...parts);
  }

  // --- the link, and telling the operator a call pops ----------------------------------------------

  const linkEl = document.getElementById("link-state");
  const clock = (iso) => (iso ? ivr.fmt.time(iso) : "");  // business time, never the browser's zone
  let feedUp = false;
  let ami = null;  // the last {"type": "link", "ami": status, "since": iso} from the feed

  function showLink() {
    let key;
    if (!feedUp) key = ami ? "reconnecting" : "connecting";
    else if (!ami || ami.ami === "connected" || ami.ami === "standby") key = "live";  // standby: another process owns AMI
    else if (ami.ami === "disabled") key = "ami_disabled";
    else key = "ami_down";
    let text = labels.link[key];
    if (key === "ami_down" && ami.since) text += " с " + clock(ami.since);
    if (linkEl.dataset.state !== key || linkEl.textContent !== text) {
      linkEl.dataset.state = key;
      linkEl.className = "link link-" + key;
      ivr.text(linkEl, text);
    }
    document.getElementById("call-card").classList.toggle("stale", key !== "live");
  }

  // The ring: a short two-tone beep from WebAudio (no file to fetch). Browsers keep audio silent
  // until the person has clicked the page once; the button below is that click.
  let audio = null;
  function audioContext() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    audio = audio || new Context();
    if (audio.state === "suspended") audio.resume().catch(() => {});
    return audio;
  }
  function ring() {
    const context = audioContext();
    if (!context) return;
    const now = context.currentTime;
    [[0, 880], [0.25, 660], [0.5, 880], [0.75, 660]].forEach(([at, hz]) => {
      const tone = context.createOscillator();
      const volume = context.createGain();
      tone.frequency.value = hz;
      volume.gain.value = 0.15;
      tone.connect(volume).connect(context.destination);
      tone.start(now + at);
      tone.stop(now + at + 0.2);
    });
  }

  const pageHidden = () => document.visibilityState !== "visible" || !document.hasFocus();
  function notify(title, body, callId) {
    if (!("Notification" in window) || Notification.permission !== "granted" || !pageHidden()) return;
    const note = new Notification(title, { body, tag: "ivr-call-" + callId });
    note.onclick = () => { window.focus(); note.close(); };
  }

  const alertsButton = document.getElementById("alerts-enable");
  const alertsStatus = document.getElementById("alerts-status");
  function showAlerts() {
    if (!alertsStatus) return;
    const permission = "Notification" in window ? Notification.permission : "unsupported";
    ivr.text(alertsStatus, { granted: "уведомления включены", denied: "уведомления запрещены в браузере",
                             unsupported: "браузер не показывает уведомления" }[permission] || "");
  }
  if (alertsButton) {
    alertsButton.addEventListener("click", async () => {
      audioContext();  // this click unlocks the sound
      if ("Notification" in window && Notification.permission === "default") {
        try { await Notification.requestPermission(); } catch (error) { /* old Safari: callback form */ }
      }
      showAlerts();
    });
    showAlerts();
  }

  const announceEl = document.getElementById("call-announce");
  let poppedCallId = data.card && data.card.state === "ringing" && data.card.call ? data.card.call.call_id : null;
  function popped(card) {
    const call = card.call;
    if (!call || card.state !== "ringing" || call.call_id === poppedCallId) return;
    poppedCallId = call.call_id;
    const who = card.customer ? person(card.customer) : "клиент не определён";
    const title = "Звонок: " + who;
    const body = "Номер " + (call.caller_number || "скрыт") +
      (call.ivr_reason_text || call.ivr_reason ? ". " + (call.ivr_reason_text || call.ivr_reason) : "");
    ivr.text(announceEl, title + ". " + body);
    ring();
    notify(title, body, call.call_id);
  }

  document.querySelectorAll(".repeat-order").forEach(armRepeat);
  if (data.operator && data.live) {
    const status = document.getElementById("feed-status");
    let lastCard = null;
    showLink();
    ivr.live("/api/v1/operators/" + encodeURIComponent(data.operator) + "/feed", (message) => {
      if (message.type === "link") { ami = message; showLink(); return; }
      if (message.type) return;  // a kind of message this page does not know yet
      ivr.text(status, "обновлено " + ivr.fmt.time(new Date()));
      const signature = JSON.stringify(message);
      if (signature === lastCard) return; // a reconnect re-sends the current card: keep the armed buttons
      lastCard = signature;
      renderCard(message);
      popped(message);
    }, {
      onOpen: () => { feedUp = true; showLink(); },
      onDown: () => { feedUp = false; showLink(); },
    });
  }
})();
