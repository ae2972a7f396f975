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

function timeOf(rfc3339, text) {
  const t = document.createElement("time");
  t.dateTime = rfc3339;
  t.textContent = text;
  return t;
}

// A finding's row, as the server writes it (finding_rows_with).
function findingRow(f, pick) {
  const tr = document.createElement("tr");
  const id = String(Number(f.id));
  tr.dataset.finding = id;
  tr.className = "fresh";
  if (pick) {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.className = "pick";
    box.value = id;
    box.setAttribute("aria-label", "pick finding " + id);
    cell(tr, box, "pick");
  }
  cell(tr, link("/findings/" + id, id));
  cell(tr, timeOf(f.observed_rfc3339, f.observed));
  const sev = document.createElement("span");
  sev.className = "sev sev-" + String(f.severity).replace(/[^a-z]/g, "");
  sev.textContent = f.severity;
  cell(tr, sev);
  cell(tr, link("/hosts/" + encodeURIComponent(f.host_id), f.host_id));
  cell(tr, f.kind, "kind");
  const live = (td, part) => { td.id = "f" + id + "-" + part; td.dataset.live = ""; };
  live(cell(tr, f.state), "state");
  live(cell(tr, String(f.count), "num"), "count");
  live(cell(tr, timeOf(f.last_rfc3339, f.last)), "last");
  cell(tr, f.summary, "summary");
  return tr;
}

// Elements with data-live and an id are read again every few seconds (the
// same page, fetched in the background) and replaced by their new version:
// finding states and counts, the overview's cards, the hosts' status.
// Nothing is re-read while the tab is hidden.
function liveParts(seconds) {
  if (!document.querySelector("[data-live][id]")) return;
  const refresh = async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-live][id]").forEach((old) => {
        const next = fresh.getElementById(old.id);
        if (next && next.innerHTML !== old.innerHTML) {
          old.innerHTML = next.innerHTML;
          old.classList.add("changed");
          formatTimes(old);
        }
      });
      document.body.dataset.liveRefreshed = String(Date.now());
    } catch (e) {
      // The console went away; try again at the next tick.
    }
  };
  window.setInterval(refresh, seconds * 1000);
}

// Boxes in front of the queue's rows: the "picked" bulk form acts on the
// checked ones (its ids are filled in when it is sent).
function picking(table) {
  const all = document.getElementById("pick-all");
  const form = document.getElementById("bulk-picked");
  const boxes = () => [...table.querySelectorAll("tbody input.pick")];
  const count = () => {
    const n = boxes().filter((b) => b.checked).length;
    if (form) {
      form.querySelector("input[name=ids]").value = boxes().filter((b) => b.checked).map((b) => b.value).join(",");
      form.querySelectorAll("button").forEach((b) => { b.disabled = n === 0; });
      const label = document.getElementById("picked-count");
      if (label) label.textContent = String(n);
    }
  };
  if (all) all.addEventListener("change", () => { boxes().forEach((b) => { b.checked = all.checked; }); count(); });
  table.addEventListener("change", (e) => { if (e.target.classList.contains("pick")) count(); });
  count();
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
    const row = findingRow(f, table.dataset.pick === "true");
    body.insertBefore(row, body.firstChild);
    formatTimes(row);
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

// A hunt's progress line, live; the page reloads when new answers arrive
// (unless a filter is being typed) and when the hunt ends.
function followHunt(progress) {
  const id = progress.dataset.hunt;
  let answered = progress.dataset.answered;
  const poll = async () => {
    try {
      const response = await fetch("/api/hunts/" + encodeURIComponent(id), { credentials: "same-origin" });
      if (response.ok) {
        const h = await response.json();
        progress.textContent = h.progress;
        const filter = document.getElementById("hunt-filter");
        const typing = filter && filter.value !== "";
        if (h.state !== "running" || (String(h.answered) !== answered && !typing)) {
          answered = String(h.answered);
          window.location.reload();
          return;
        }
      }
    } catch (e) {
      // The console went away; keep trying.
    }
    window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 1000);
}

// Tables with class "sortable": a click on a header sorts by that column
// (numbers as numbers), a second click reverses.
function sortable(table) {
  table.querySelectorAll("thead th").forEach((th, index) => {
    th.tabIndex = 0;
    th.setAttribute("role", "button");
    const sort = () => {
      const body = table.tBodies[0];
      const up = th.dataset.sorted !== "up";
      table.querySelectorAll("thead th").forEach((o) => { delete o.dataset.sorted; o.removeAttribute("aria-sort"); });
      th.dataset.sorted = up ? "up" : "down";
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      const rows = [...body.rows];
      const key = (row) => row.cells[index] ? row.cells[index].textContent.trim() : "";
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const nx = Number(x), ny = Number(y);
        const c = x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
        return up ? c : -c;
      });
      rows.forEach((r) => body.appendChild(r));
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
  });
}

// An input with data-filter="TABLE": shows the rows of TABLE holding its text.
function filterRows(input) {
  const table = document.getElementById(input.dataset.filter);
  if (!table) return;
  input.addEventListener("input", () => {
    const text = input.value.toLowerCase();
    [...table.tBodies[0].rows].forEach((row) => {
      row.hidden = text !== "" && !row.textContent.toLowerCase().includes(text);
    });
  });
}

// Times: the server writes them in UTC. The operator may show them in this
// browser's time zone instead (kept in localStorage), and each says how long
// ago it was (refreshed every 30 s); the UTC form stays on hover.
const TZ_KEY = "bannin.tz";

function ago(ms) {
  const future = ms < 0;
  const s = Math.abs(ms) / 1000;
  let text;
  if (s < 45) return "just now";
  else if (s < 90 * 60) text = Math.round(s / 60) + " min";
  else if (s < 36 * 3600) text = Math.round(s / 3600) + " h";
  else text = Math.round(s / 86400) + " d";
  return future ? "in " + text : text + " ago";
}

function formatTimes(root) {
  const local = localStorage.getItem(TZ_KEY) === "local";
  const now = Date.now();
  (root || document).querySelectorAll("time[datetime]").forEach((t) => {
    const d = new Date(t.dateTime);
    if (isNaN(d.getTime())) return;
    if (!t.dataset.utc) t.dataset.utc = t.textContent;
    t.textContent = local
      ? d.toLocaleString(undefined, {
          year: "numeric", month: "2-digit", day: "2-digit",
          hour: "2-digit", minute: "2-digit", second: "2-digit",
          hour12: false, timeZoneName: "short",
        })
      : t.dataset.utc;
    t.dataset.ago = ago(now - d.getTime());
    t.title = t.dataset.utc + " · " + t.dataset.ago;
  });
}

function timeZoneChoice(select) {
  select.value = localStorage.getItem(TZ_KEY) === "local" ? "local" : "utc";
  select.addEventListener("change", () => {
    localStorage.setItem(TZ_KEY, select.value);
    formatTimes();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const tz = document.getElementById("tz");
  if (tz) timeZoneChoice(tz);
  formatTimes();
  setInterval(() => formatTimes(), 30000);
  const progress = document.getElementById("hunt-progress");
  if (progress && progress.dataset.running === "true") followHunt(progress);
  document.querySelectorAll("table.sortable").forEach(sortable);
  document.querySelectorAll("input[data-filter]").forEach(filterRows);
  const queue = document.getElementById("queue");
  if (queue && queue.dataset.stream) followQueue(queue);
  if (queue && queue.dataset.pick === "true") picking(queue);
  liveParts(Number(document.body.dataset.liveSecs || "10"));
  const state = document.getElementById("command-state");
  if (state && state.dataset.finished === "false") followCommand(state);
});
