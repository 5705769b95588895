// herald console: plain JS over the JSON API (/api/...). No framework, no build step.
"use strict";
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const api = async (path, options) => {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
};
const SVG = "http://www.w3.org/2000/svg";
const num = (n) => (n == null ? "–" : Number.isInteger(n) ? n : n.toFixed(1));

// Tabs follow the URL's hash.
function showTab() {
  const tab = (location.hash || "#pipeline").slice(1);
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("on", s.id === tab));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("on", a.hash === "#" + tab));
  if (tab === "traces") loadRecent();
  if (tab === "catalog") loadCatalog();
  // Laid out while shown: a hidden page has no width to fit, nor text to measure.
  if (tab === "pipeline" && flow) { drawFlow(flow); refreshStats().catch((e) => console.warn(e)); }
}
window.addEventListener("hashchange", showTab);
let resizing = null;
window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(showTab, 200); });

// ---- the flow, laid out in columns by distance from the entry points ----
// The columns share the card's width (never wider: no scrolling sideways at 1,280 pixels), each
// node is three lines (name; filter or traffic; counts), and a text too long for its node is cut
// with "…" and shown whole on hover, so nothing runs over a node or an edge.
let flow = null;
function depths(f) {
  const incoming = new Map(f.nodes.map((n) => [n.id, 0]));
  f.edges.filter((e) => e.kind !== "fails").forEach((e) => incoming.set(e.to, incoming.get(e.to) + 1));
  const depth = new Map();
  let frontier = f.nodes.filter((n) => n.kind !== "dlq" && incoming.get(n.id) === 0).map((n) => n.id);
  frontier.forEach((id) => depth.set(id, 0));
  while (frontier.length) {
    const next = [];
    for (const id of frontier)
      for (const e of f.edges)
        if (e.from === id && e.kind !== "fails" && !depth.has(e.to)) { depth.set(e.to, depth.get(id) + 1); next.push(e.to); }
    frontier = next;
  }
  for (const e of f.edges) if (e.kind === "fails" && !depth.has(e.to)) depth.set(e.to, (depth.get(e.from) ?? 0) + 1);
  return depth;
}
function layout(f, available) {
  const depth = depths(f);
  const columns = [];
  for (const n of f.nodes) { const d = depth.get(n.id) ?? 0; (columns[d] ||= []).push(n); }
  // Node width and gap from the room there is: at most 184 + 76, at least 120 + 16.
  const step = Math.max(136, Math.min(260, Math.floor((available - 20) / columns.length)));
  const W = step - Math.max(16, Math.min(76, Math.round(step * 0.18))), H = 56, GY = 10;
  const pos = new Map();
  columns.forEach((col, x) => col.sort((a, b) => (a.kind === "dlq") - (b.kind === "dlq")).forEach((n, y) => pos.set(n.id, { x: 10 + x * step, y: 10 + y * (H + GY), w: W, h: H })));
  const height = Math.max(...columns.map((c) => c.length)) * (H + GY) + 20;
  return { pos, width: 10 + (columns.length - 1) * step + W + 10, height };
}
function fitText(el, text, max) {
  el.textContent = text;
  if (el.getComputedTextLength() <= max) return;
  let n = text.length;
  while (n > 1 && (el.textContent = text.slice(0, n - 1) + "…", el.getComputedTextLength() > max)) n--;
}
function nodeLine(id, cls, text) {
  const g = document.querySelector(`[data-node="${id}"]`);
  const el = g?.querySelector(`.${cls}`);
  if (!el) return;
  fitText(el, text, Number(g.querySelector("rect").getAttribute("width")) - 16);
  const title = g.querySelector("title");
  title.textContent = [g.dataset.node, ...[...g.querySelectorAll("text")].map((t) => t.dataset.full ?? "")].filter(Boolean).join("\n");
  el.dataset.full = text;
}

function drawFlow(f) {
  const { pos, width, height } = layout(f, $("#flow").clientWidth || 1200);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  let html = "";
  for (const e of f.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    const back = x2 <= x1 ? " back" : "";
    html += `<path class="edge ${e.kind}${back}" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"><title>${esc(e.from)} ${e.kind} ${esc(e.to)} ${esc(e.label)}</title></path>`;
  }
  for (const n of f.nodes) {
    const p = pos.get(n.id);
    html += `<g class="node" data-node="${esc(n.id)}" transform="translate(${p.x},${p.y})"><title></title><rect width="${p.w}" height="${p.h}" style="stroke:var(--${n.kind})"/>` +
      `<text x="8" y="17" class="name ${n.kind}"></text><text x="8" y="33" class="detail"></text><text x="8" y="48" class="count"></text></g>`;
  }
  svg.innerHTML = html;
  $("#flow").replaceChildren(svg);
  for (const n of f.nodes) {
    nodeLine(n.id, "name", (n.entry ? "▶ " : "") + n.label);
    nodeLine(n.id, "detail", n.detail || n.kind);
  }
}

async function refreshStats() {
  const stats = await api("/api/stats");
  const rows = [];
  for (const [id, s] of Object.entries(stats.functions)) {
    const label = flow.nodes.find((n) => n.id === id)?.label ?? id;
    rows.push(`<tr data-fn="${esc(id)}"><td>${esc(label)}</td><td class="invocations">${s.invocations}</td><td class="errors ${s.errors ? "bad" : ""}">${s.errors}</td>` +
      `<td class="p99">${num(s.p99_ms)}</td><td class="events_in">${num(s.events_in)}</td><td class="events_out">${num(s.events_out)}</td>` +
      `<td class="duplicates">${num(s.duplicates)}</td><td class="dead_lettered ${s.dead_lettered ? "bad" : ""}">${num(s.dead_lettered)}</td></tr>`);
    setCount(id, `err ${s.errors} · p99 ${num(s.p99_ms)} ms`, s.errors > 0, `in ${num(s.events_in)} · out ${num(s.events_out)}`);
  }
  $("#functions tbody").innerHTML = rows.join("");
  let letters = 0;
  for (const [id, q] of Object.entries(stats.queues)) {
    const dlq = flow.nodes.find((n) => n.id === id)?.kind === "dlq";
    if (dlq) letters += q.visible;
    setCount(id, dlq ? `${q.visible} dead letters` : `${q.visible} waiting · ${q.in_flight} in flight`, dlq && q.visible > 0);
  }
  $("#dlq-total").textContent = letters || "";
}
function setCount(id, text, hot, detail) {
  const g = document.querySelector(`[data-node="${id}"]`);
  if (!g) return;
  if (g.querySelector(".count").dataset.full !== text) nodeLine(id, "count", text);
  if (detail !== undefined && g.querySelector(".detail").dataset.full !== detail) nodeLine(id, "detail", detail);
  g.classList.toggle("hot", hot);
}

async function refreshAlarms() {
  const a = await api("/api/alarms");
  const firing = a.evaluated.filter((s) => s.state === "ALARM");
  $("#alarm-summary").innerHTML = firing.length ? `<span class="pill ALARM">${firing.length} ALARM</span>` : `<span class="pill OK">all OK</span>`;
  const order = { ALARM: 0, INSUFFICIENT_DATA: 1, OK: 2 };
  const sorted = [...a.evaluated].sort((x, y) => order[x.state] - order[y.state]);
  $("#alarms").innerHTML = sorted.map((s) => `<li data-alarm="${esc(s.logical_id)}" title="${esc(s.description)}"><span class="pill ${s.state}">${s.state.replace("_", " ")}</span>${esc(s.logical_id)}` +
    (s.state === "ALARM" ? `<div class="muted">${esc(s.reason)}</div>` : "") + `</li>`).join("");
  $("#not-evaluated").innerHTML = a.not_evaluated.map((n) => `<li>${esc(n.id)} <span class="muted">${esc(n.why)}</span></li>`).join("");
}

// ---- dead letters ----
async function refreshDlqs() {
  const dlqs = await api("/api/dlqs");
  $("#dlq-list").innerHTML = dlqs.map((q) => `<div class="card" data-dlq="${esc(q.id)}">
    <div class="dlq-head"><h3>${esc(q.id)}</h3><span class="count">${q.letters.length}</span><span class="muted">${q.redrives_to ? "redrives to " + esc(q.redrives_to) : "no redrive target"}</span>
    <button class="redrive" data-id="${esc(q.id)}" ${q.letters.length && q.redrives_to ? "" : "disabled"}>Redrive</button></div>
    <ul>${q.letters.map((l) => `<li class="letter"><span class="reason">${esc(l.reason)}</span> <span class="muted">${l.stage ? "at " + esc(l.stage) + " · " : ""}${l.age_s}s ago · received ${l.receives}×</span>
      <details><summary class="muted">message ${esc(l.message_id)}</summary><pre>${esc(l.body)}</pre></details></li>`).join("")}</ul></div>`).join("");
}
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.redrive");
  if (!button) return;
  button.disabled = true; button.textContent = "Redriving…";
  try {
    const done = await api(`/api/dlqs/${encodeURIComponent(button.dataset.id)}/redrive`, { method: "POST" });
    button.textContent = `Moved ${done.moved}`;
  } catch (err) { button.textContent = "Failed: " + err.message; }
  setTimeout(refreshDlqs, 300);
});

// ---- traces ----
async function loadRecent() {
  try {
    const recent = await api("/api/traces");
    $("#recent").innerHTML = recent.map((t) => `<li><a href="#traces" data-trace="${esc(t.correlation_id)}">${esc(t.first)}</a> <span class="muted">${t.events} events · ${esc(t.started)} · ${esc(t.correlation_id)}</span></li>`).join("");
  } catch (err) { $("#recent").innerHTML = `<li class="muted">${esc(err.message)}</li>`; }
}
document.addEventListener("click", (event) => {
  const link = event.target.closest("[data-trace]");
  if (link) { $("#trace-id").value = link.dataset.trace; showTrace(link.dataset.trace); }
});
$("#trace-form").addEventListener("submit", (event) => { event.preventDefault(); showTrace($("#trace-id").value.trim()); });

async function showTrace(id) {
  let t;
  try { t = await api(`/api/traces/${encodeURIComponent(id)}`); } catch (err) { $("#trace").innerHTML = `<div class="card">${esc(err.message)}</div>`; return; }
  const end = Math.max(1, ...t.hops.map((h) => h.at_ms));
  const timeline = t.hops.map((h) => `<div class="row"><span>+${h.at_ms} ms <b>${esc(h.function)}</b> ${esc(h.event_type)}</span>` +
    `<span><span class="bar ${esc(h.kind)}" style="display:inline-block;margin-left:${(h.at_ms / end) * 85}%;width:1%" title="${esc(h.detail)}"></span> ${esc(h.kind)} <span class="muted">${esc(h.detail)}</span></span></div>`).join("");
  $("#trace").innerHTML = `<div class="card"><h2>Timeline of ${esc(t.correlation_id)}</h2><div class="timeline">${timeline}</div></div>
    <div class="card"><h2>Sequence</h2><div id="seq"></div><details><summary class="muted">Mermaid</summary><pre>${esc(t.mermaid)}</pre></details></div>`;
  drawSequence(t.steps);
}

function drawSequence(steps) {
  const actors = [];
  steps.forEach((s) => [s.from, s.to].forEach((a) => actors.includes(a) || actors.push(a)));
  const X = (a) => 70 + actors.indexOf(a) * 150, top = 40, row = 30, height = top + steps.length * row + 20;
  let html = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>`;
  actors.forEach((a) => { html += `<rect x="${X(a) - 55}" y="5" width="110" height="24"/><text x="${X(a)}" y="21" text-anchor="middle">${esc(a)}</text><line class="life" x1="${X(a)}" y1="29" x2="${X(a)}" y2="${height}"/>`; });
  steps.forEach((s, i) => {
    const y = top + i * row + 12, x1 = X(s.from), x2 = X(s.to);
    html += `<line class="msg" x1="${x1}" y1="${y}" x2="${x2 + (x2 > x1 ? -4 : 4)}" y2="${y}"/><text x="${(x1 + x2) / 2}" y="${y - 4}" text-anchor="middle" font-size="11">${esc(s.label)}</text>`;
  });
  $("#seq").innerHTML = `<svg class="seq" width="${actors.length * 150 + 40}" height="${height}">${html}</svg>`;
}

// ---- catalog ----
async function loadCatalog() {
  const types = await api("/api/catalog");
  $("#catalog-list").innerHTML = `<div class="types">${types.map((t) => `<div class="card" data-type="${esc(t.name)}"><h2>${esc(t.name)}</h2>
    <p class="muted">${esc(t.description)}</p>
    <p><b>versions</b> ${t.versions.map((v) => "v" + v.version).join(", ")} · <b>announced by</b> <span class="producers">${esc(t.producers.join(", ") || "–")}</span>${t.sources.length ? ` <span class="muted">(source ${esc(t.sources.join(", "))})</span>` : ""}</p>
    <p><b>subscribers</b></p><ul>${t.subscribers.map((s) => `<li>${esc(s.function ?? "?")} <span class="muted">via ${esc(s.queue)} (${esc(s.filter)})</span></li>`).join("") || "<li class='muted'>none</li>"}</ul>
    <details><summary>schema v${t.versions.at(-1)?.version}</summary><pre>${esc(JSON.stringify(t.versions.at(-1)?.schema, null, 2))}</pre></details>
    ${t.sample ? `<details><summary>sample (${esc(t.sample.file)})</summary><pre>${esc(JSON.stringify(t.sample.event, null, 2))}</pre></details>` : ""}</div>`).join("")}</div>`;
}

// ---- start ----
async function start() {
  flow = await api("/api/flow");
  $("#stack").textContent = flow.stack;
  showTab();
  const every = (ms, f) => { const run = () => f().catch((e) => console.warn(e)).finally(() => setTimeout(run, ms)); run(); };
  every(1000, refreshStats);
  every(2000, refreshAlarms);
  every(2000, refreshDlqs);
}
start();
