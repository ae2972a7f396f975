// Bannin console: the live finding queue and command progress. Compiled into
// the `bannin` binary. Everything from the collector is inserted as text
// (textContent), never as markup.
"use strict";

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text instanceof Node) td.appendChild(text); else td.textContent = text;
  row.appendChild(td);
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function findingRow(f) {
  const tr = document.createElement("tr");
  tr.dataset.finding = String(f.id);
  tr.className = "fresh";
  cell(tr, link("/findings/" + encodeURIComponent(f.id), String(f.id)));
  const t = document.createElement("time");
  t.dateTime = f.observed_rfc3339;
  t.textContent = f.observed;
  cell(tr, t);
  const sev = document.createElement("span");
  sev.className = "sev sev-" + String(f.severity).replace(/[^a-z]/g, "");
  sev.textContent = f.severity;
  cell(tr, sev);
  cell(tr, link("/hosts/" + encodeURIComponent(f.host_id), f.host_id));
  cell(tr, f.kind, "kind");
  cell(tr, f.state);
  cell(tr, String(f.count), "num");
  cell(tr, f.summary, "summary");
  return tr;
}

function followQueue(table) {
  const body = table.tBodies[0];
  const status = document.getElementById("live-status");
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("open", () => {
    if (status) status.textContent = "Live: new findings appear at the top.";
    table.dataset.live = "open";
  });
  source.addEventListener("error", () => {
    if (status) status.textContent = "Live updates interrupted; reconnecting…";
    table.dataset.live = "reconnecting";
  });
  source.addEventListener("finding", (message) => {
    const f = JSON.parse(message.data);
    if (body.querySelector('tr[data-finding="' + String(Number(f.id)) + '"]')) return;
    body.insertBefore(findingRow(f), body.firstChild);
    const empty = document.getElementById("queue-empty");
    if (empty) empty.remove();
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  });
}

function followCommand(state) {
  const id = state.dataset.command;
  const poll = async () => {
    try {
      const response = await fetch("/api/commands/" + encodeURIComponent(id), { credentials: "same-origin" });
      if (response.ok) {
        const c = await response.json();
        if (c.state !== state.textContent) {
          state.textContent = c.state;
          state.className = "badge st-" + String(c.state).replace(/[^a-z]/g, "");
        }
        if (["succeeded", "failed", "expired"].includes(c.state)) {
          window.location.reload();
          return;
        }
      }
    } catch (e) {
      // The console went away; keep trying.
    }
    window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 500);
}

document.addEventListener("DOMContentLoaded", () => {
  const queue = document.getElementById("queue");
  if (queue && queue.dataset.stream) followQueue(queue);
  const state = document.getElementById("command-state");
  if (state && state.dataset.finished === "false") followCommand(state);
});
