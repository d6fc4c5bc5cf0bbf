// The wallboard redraws itself from GET /api/v1/wallboard every few seconds (session cookie, no library).
"use strict";
(function () {
  const root = document.getElementById("wallboard");
  if (!root) return;
  const url = root.dataset.url;
  const every = Math.max(1, Number(root.dataset.poll) || 2) * 1000;
  const $ = (id) => document.getElementById(id);
  const put = (id, value) => { const el = $(id); if (el) el.textContent = value == null ? "—" : String(value); };
  const mmss = (s) => {
    if (s == null) return "—";
    const t = Math.round(Number(s));
    return Math.floor(t / 60) + ":" + String(t % 60).padStart(2, "0");
  };
  const cell = (row, value, className) => {
    const td = document.createElement("td");
    td.textContent = value == null ? "" : String(value);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  };
  const empty = (body, columns, message) => {
    const row = document.createElement("tr");
    cell(row, message, "muted").colSpan = columns;
    body.appendChild(row);
  };

  function draw(data) {
    put("wb-updated", data.clock);  // business time, formatted by the server (ivr/web/console/formats.py)
    const ami = $("wb-ami");
    ami.hidden = !!data.ami.live;
    if (!data.ami.live) ami.textContent = (data.ami.message || "AMI не подключен") + (data.ami.status_text ? " (" + data.ami.status_text + ")" : "");
    put("wb-ivr", data.ivr.count);
    put("wb-queue", data.queue.count);
    $("wb-longest").textContent = mmss(data.queue.longest_wait_seconds);
    put("wb-busy", data.operators.busy);
    put("wb-free", data.operators.free);
    const orders = data.orders_today || {};
    put("wb-orders-ivr", orders.ivr);
    put("wb-orders-operator", orders.operator);
    put("wb-orders-total", orders.total);

    const queue = $("wb-queue-rows");
    queue.replaceChildren();
    for (const call of data.queue.calls) {
      const row = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "/calls/" + encodeURIComponent(call.call_id);
      link.textContent = call.caller || "скрыт";
      cell(row, "").appendChild(link);
      if (call.customer_id) {
        const customer = document.createElement("a");
        customer.href = "/customers/" + encodeURIComponent(call.customer_id);
        customer.textContent = call.customer_name || call.customer_id;
        cell(row, "").appendChild(customer);
      } else {
        cell(row, "—");
      }
      cell(row, mmss(call.seconds));
      queue.appendChild(row);
    }
    if (!data.queue.calls.length) empty(queue, 3, "Никто не ждёт.");

    const ops = $("wb-operator-rows");
    ops.replaceChildren();
    for (const op of data.operators.list) {
      const row = document.createElement("tr");
      cell(row, op.name);
      cell(row, op.interface);
      cell(row, op.state_text || "неизвестно", "state-" + op.state);
      cell(row, mmss(op.seconds));
      ops.appendChild(row);
    }
    if (!data.operators.list.length) empty(ops, 4, "Операторы не известны.");
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) { location.href = "/login?next=/wallboard"; return; }
      if (!response.ok) throw new Error(response.statusText);
      draw(await response.json());
      $("wb-error").hidden = true;
    } catch (err) {
      $("wb-error").hidden = false;
    } finally {
      setTimeout(poll, every);
    }
  }
  setTimeout(poll, every);
})();
