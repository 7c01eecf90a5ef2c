"use strict";
// brainjar dashboard: one WebSocket (/ws) feeds everything; REST only for who we are and for
// operator actions. Text from brains is only ever inserted as text (textContent, Text nodes).

const params = new URLSearchParams(location.search);
const KIOSK = params.get("kiosk") === "1";
const KNOWN_HUES = { SUBJECT: 192, OBSERVER: 36, GOD: 280 };
const PAST_KEEP = 3;          // finished thoughts shown above the live one
const NOW_MAX = 6000;         // characters of the live thought kept on screen
const SERIES_MAX = 900;       // chart points (15 minutes at 1 Hz)
const RATE_WINDOW_MS = 2000;  // tokens/s: tokens seen in this window (refreshed every 250 ms)

const $ = (id) => document.getElementById(id);
const brains = new Map();     // id -> panel record
let order = [];               // brain ids in hive order
let me = { user: "", role: "viewer" };
let hiveStarted = 0;
let series = { t: [], rss: [], sysPct: [], gpu: [], toks: {}, jar: {} };
let deaths = [];              // {t (s), brain, cause, crash_count}
let charts = {};
let sysTotal = 0;
let hasGpu = false;           // the GPU memory series is drawn only where there is one
let lab = null;               // GET /api/lab of an experiment's run, null otherwise
let labMarks = [];            // interventions on the death timeline: {t (s), brain, id, action}

function hueOf(id) {
  if (id in KNOWN_HUES) return KNOWN_HUES[id];
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}
const colour = (id, a = 1) => `hsla(${hueOf(id)}, 85%, 64%, ${a})`;

function fmtBytes(n) {
  if (n == null) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${u[i]}`;
}
function fmtDuration(s) {
  if (!(s >= 0)) return "–";
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${Math.floor(s % 60)}s`;
}
function clock(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8);
}

let toastTimer = 0;
function toast(msg, bad = false) {
  const t = $("toast");
  t.textContent = msg;
  t.classList.toggle("bad", bad);
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 3500);
}

function logLine(kind, ms, text) {
  const li = document.createElement("li");
  li.className = kind;
  const t = document.createElement("time");
  t.textContent = clock(ms);
  const s = document.createElement("span");
  s.textContent = text;
  li.append(t, s);
  const log = $("log");
  log.prepend(li);
  while (log.children.length > 200) log.lastChild.remove();
}

// ---- brain panels ------------------------------------------------------------------------
function makePanel(b) {
  const el = $("brain-tpl").content.firstElementChild.cloneNode(true);
  el.style.setProperty("--hue", hueOf(b.id));
  el.dataset.brain = b.id;
  const q = (s) => el.querySelector(s);
  const p = {
    id: b.id, el,
    count: q(".death-count"), countN: q(".death-count .n"),
    state: q(".state"), life: q(".life"), speed: q(".speed"),
    jar: q(".jar"), fill: q(".jar .fill"), jarText: q(".jar-text"),
    past: q(".past"), nowText: document.createTextNode(""),
    veilTitle: q(".veil-title"), veilSub: q(".veil-sub"),
    deaths: 0, lifeNo: 1, timers: [], eventAt: 0, lastEvent: "",
    jarTokens: 0, tokenAt: 0, rate: [],   // rate: [arrival ms, tokens] of the last RATE_WINDOW_MS
  };
  q(".id").textContent = b.id;
  q(".role").textContent = b.role;
  q(".now .text").append(p.nowText);
  for (const btn of el.querySelectorAll("button[data-act]"))
    btn.addEventListener("click", () => act(b.id, btn.dataset.act));
  q("form.ops").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = e.target.elements.say;
    const text = input.value.trim();
    if (!text) return;
    act(b.id, "say", { text, from: me.user || "a visitor" }).then((ok) => { if (ok) input.value = ""; });
  });
  return p;
}

function setState(p, state) {
  p.state.textContent = state;
  p.state.className = "state " + state.replace(/\s+/g, "-");
  const dead = state === "dead" || state === "dying";
  if (!dead && p.el.classList.contains("dead") && !p.el.classList.contains("dying")) revive(p, null);
  if (dead && !p.el.classList.contains("dead") && !p.el.classList.contains("dying")) {
    p.el.classList.add("dead");
    p.veilTitle.textContent = "DEAD";
    p.veilSub.textContent = "waiting to be resurrected";
  }
  p.el.classList.toggle("paused", state === "paused");
}

function setJar(p, used, total) {
  const f = total > 0 ? Math.min(1, used / total) : 0;
  p.fill.style.width = (f * 100).toFixed(1) + "%";
  p.jar.classList.toggle("high", f > 0.8);
  p.jarText.textContent = total > 0 ? `jar ${used} / ${total} tokens · ${(f * 100).toFixed(0)}%` : "jar –";
}

// Jar fill and speed follow the token events themselves (each carries the jar's fill), so they
// move with the text; the once-a-second tick only fills in when no token has come lately. A
// dead brain holds nothing and says nothing: zero on both.
function isDead(p) { return p.el.classList.contains("dead"); }
function tokenSeen(p, m) {
  const now = Date.now();
  p.tokenAt = now;
  p.rate.push([now, m.n || 1]);
  if (m.jar_used != null) setJar(p, m.jar_used, m.jar_tokens || p.jarTokens);
}
function showSpeed(p) {
  const now = Date.now();
  while (p.rate.length && now - p.rate[0][0] > RATE_WINDOW_MS) p.rate.shift();
  let n = 0;
  for (const [, k] of p.rate) n += k;
  const v = isDead(p) ? 0 : n / (RATE_WINDOW_MS / 1000);
  p.speed.textContent = `${v.toFixed(1)} tok/s`;
}
setInterval(() => { for (const p of brains.values()) showSpeed(p); }, 250);

function setDeaths(p, n, bump) {
  if (n === p.deaths && !bump) return;
  p.deaths = n;
  p.countN.textContent = n;
  if (bump) {
    p.count.classList.remove("bump");
    void p.count.offsetWidth; // restart the animation
    p.count.classList.add("bump");
  }
}

function setNow(p, text) {
  p.nowText.data = text.length > NOW_MAX ? text.slice(-NOW_MAX) : text;
}

function appendNow(p, text) {
  p.nowText.appendData(text);
  if (p.nowText.length > NOW_MAX * 1.5) p.nowText.deleteData(0, p.nowText.length - NOW_MAX);
}

function pushPast(p, text, complete) {
  if (!text || !text.trim()) return;
  const li = document.createElement("li");
  li.textContent = text.trim();
  if (!complete) li.classList.add("cut");
  p.past.append(li);
  while (p.past.children.length > PAST_KEEP) p.past.firstChild.remove();
}

function die(p, cause, count) {
  p.eventAt = Date.now();
  p.lastEvent = "death";
  p.timers.forEach(clearTimeout);
  p.timers = [];
  p.el.classList.remove("reborn");
  p.el.classList.add("dying", "dead");
  p.veilTitle.textContent = "DEAD";
  p.veilSub.textContent = `${cause.replace(/_/g, " ").toLowerCase()} · death ${count}`;
  setDeaths(p, count, true);
  setState(p, "dead");
  p.rate = [];
  setJar(p, 0, p.jarTokens);
  showSpeed(p);
  p.timers.push(setTimeout(() => p.el.classList.remove("dying"), 900));
}

function revive(p, life) {
  if (life != null) { p.eventAt = Date.now(); p.lastEvent = "resurrection"; }
  p.timers.forEach(clearTimeout);
  p.timers = [];
  p.el.classList.remove("dying", "dead");
  if (life != null) { // the new life is announced beside its number, never over its words
    p.lifeNo = life;
    p.life.textContent = `life ${life} begins`;
    p.el.classList.add("reborn");
    p.timers.push(setTimeout(() => { p.el.classList.remove("reborn"); p.life.textContent = `life ${p.lifeNo}`; }, 2400));
  }
  setNow(p, "");
}

/* What a 202 means: the action is applied at the engine's next step, not yet done. A 409 says
 * why it cannot be (a dead brain killed, a living one resurrected), in the toast. */
const ACCEPTED = {
  kill: "it dies at its engine's next step",
  resurrect: "it comes back at its engine's next step",
  pause: "it pauses at its engine's next step",
  resume: "it resumes at its engine's next step",
  say: "it hears the words at its next thought",
};

async function act(id, action, body = {}) {
  try {
    const r = await fetch(`/api/brains/${encodeURIComponent(id)}/${action}`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const j = await r.json().catch(() => ({}));
    if (r.status === 401) { location.href = "/login"; return false; }
    if (!r.ok) { toast(`${action} ${id} ${r.status === 409 ? "refused" : "failed"}: ${j.error || r.status}`, true); return false; }
    toast(`${action} ${id}: accepted; ${ACCEPTED[action] || "applied at its engine's next step"}`);
    return true;
  } catch (e) {
    toast(`${action} ${id}: brainjar does not answer`, true);
    return false;
  }
}

function buildPanels(list) {
  const ids = list.map((b) => b.id);
  if (ids.join("|") === order.join("|")) return;
  order = ids;
  brains.clear();
  const root = $("brains");
  root.textContent = "";
  for (const b of list) {
    const p = makePanel(b);
    brains.set(b.id, p);
    root.append(p.el);
  }
  drawGraph(list);
  makeCharts();
}

// ---- who watches whom --------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
let graphEdges = new Map();   // "from>to" -> path
let graphNodes = new Map();
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}
function drawGraph(list) {
  const g = $("graph");
  g.textContent = "";
  graphEdges.clear();
  graphNodes.clear();
  const W = 300, H = 220, R = Math.min(W, H) / 2 - 34, cx = W / 2, cy = H / 2 + 4, r = 22;
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7",
    markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "rgba(148,163,184,0.8)" }));
  defs.append(marker);
  g.append(defs);
  const pos = new Map();
  list.forEach((b, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / list.length;
    pos.set(b.id, list.length === 1 ? [cx, cy] : [cx + R * Math.cos(a), cy + R * Math.sin(a)]);
  });
  for (const b of list) {
    const targets = b.watches_all ? list.map((x) => x.id).filter((x) => x !== b.id) : b.watches;
    for (const t of targets) {
      if (!pos.has(t)) continue;
      const [x1, y1] = pos.get(b.id), [x2, y2] = pos.get(t);
      const dx = x2 - x1, dy = y2 - y1, len = Math.hypot(dx, dy) || 1;
      const ux = dx / len, uy = dy / len;
      // a slight curve so that A->B and B->A do not overlap
      const mx = (x1 + x2) / 2 - uy * 14, my = (y1 + y2) / 2 + ux * 14;
      const path = svg("path", {
        class: "edge", "marker-end": "url(#arrow)",
        d: `M${x1 + ux * r},${y1 + uy * r} Q${mx},${my} ${x2 - ux * (r + 3)},${y2 - uy * (r + 3)}`,
      });
      const title = svg("title", {});
      title.textContent = `${b.id} watches ${t}`;
      path.append(title);
      g.append(path);
      graphEdges.set(`${t}>${b.id}`, path); // what flows: t's thoughts to b
    }
  }
  for (const b of list) {
    const [x, y] = pos.get(b.id);
    const node = svg("g", { class: "node", transform: `translate(${x},${y})` });
    node.append(svg("circle", { r, stroke: colour(b.id) }));
    const t = svg("text", { y: 4 });
    t.textContent = b.id.length > 8 ? b.id.slice(0, 7) + "…" : b.id;
    node.append(t);
    g.append(node);
    graphNodes.set(b.id, node);
  }
}
function flashEdge(from, to) {
  const e = graphEdges.get(`${from}>${to}`);
  if (!e) return;
  e.classList.add("flash");
  setTimeout(() => e.classList.remove("flash"), 700);
}

// ---- charts (uPlot) --------------------------------------------------------------------
const AXIS = { stroke: "#8b95aa", grid: { stroke: "rgba(148,163,184,0.08)" }, ticks: { stroke: "rgba(148,163,184,0.15)" },
  font: "12px system-ui, sans-serif" };
// Time labels at least 90 px apart, so that they never run into each other on a narrow chart.
const XAXIS = { ...AXIS, space: 90 };
function chartWidth(id) { return Math.max(240, $(id).clientWidth); }

function makeCharts() {
  if (!window.uPlot) return;
  for (const c of Object.values(charts)) c.destroy();
  charts = {};
  const h = KIOSK ? Math.max(110, Math.round(window.innerHeight * 0.17)) : 190;
  charts.toks = new uPlot({
    width: chartWidth("chart-toks"), height: h,
    scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.15)] } },
    axes: [{ ...XAXIS }, { ...AXIS, size: 46 }],
    series: [{}, ...order.map((id) => ({ label: id, stroke: colour(id), width: 2, fill: colour(id, 0.06), points: { show: false } }))],
    legend: { live: false },
  }, [[], ...order.map(() => [])], $("chart-toks"));
  charts.mem = new uPlot({
    width: chartWidth("chart-mem"), height: h,
    scales: { x: { time: true }, mb: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.2)] }, pct: { range: [0, 100] } },
    axes: [{ ...XAXIS }, { ...AXIS, scale: "mb", size: 54, values: (u, v) => v.map((x) => x + " MB") },
      { ...AXIS, scale: "pct", side: 1, size: 56, grid: { show: false }, values: (u, v) => v.map((x) => x + "%") }],
    series: [{},
      { label: "process", scale: "mb", stroke: "#7dd3fc", width: 2, fill: "rgba(125,211,252,0.08)", points: { show: false } },
      ...(hasGpu ? [{ label: "GPU", scale: "mb", stroke: "#a3e635", width: 2, points: { show: false } }] : []),
      { label: "system %", scale: "pct", stroke: "#94a3b8", width: 1.5, dash: [4, 4], points: { show: false } },
      ...order.map((id) => ({ label: `${id} jar %`, scale: "pct", stroke: colour(id, 0.8), width: 1.2, points: { show: false } }))],
    legend: { live: false },
  }, [[], [], ...(hasGpu ? [[]] : []), [], ...order.map(() => [])], $("chart-mem"));
  charts.deaths = new uPlot({
    width: chartWidth("chart-deaths"), height: KIOSK ? h : Math.max(120, 40 + 34 * order.length),
    scales: { x: { time: true }, y: { range: [-0.6, order.length - 0.4] } },
    axes: [{ ...XAXIS }, { ...AXIS, size: 84, splits: () => order.map((_, i) => i), values: (u, v) => v.map((i) => order[i] || "") }],
    series: [{}, ...order.map((id) => ({
      label: id, stroke: colour(id), fill: colour(id, 0.85), paths: () => null,
      points: { show: true, size: 11, width: 1.5, stroke: "#fff", fill: colour(id) },
    })), { label: "intervention", stroke: "#fde047", paths: () => null,
      points: { show: true, size: 8, width: 2, stroke: "#fde047", fill: "#111" } }],
    legend: { show: false },
  }, [[], ...order.map(() => []), []], $("chart-deaths"));
  window.brainjarCharts = charts; // for the browser test's look at the axes
  redrawCharts();
}

function redrawCharts() {
  if (!charts.toks) return;
  const t = series.t;
  charts.toks.setData([t, ...order.map((id) => series.toks[id] || [])]);
  charts.mem.setData([t, series.rss, ...(hasGpu ? [series.gpu] : []), series.sysPct, ...order.map((id) => series.jar[id] || [])]);
  // deaths and the lab's interventions on one time axis (uPlot wants it ascending)
  const marks = deaths.map((d) => ({ ...d, mark: false })).concat(labMarks.map((m) => ({ ...m, mark: true })))
    .sort((a, b) => a.t - b.t);
  const xs = marks.map((d) => d.t);
  const now = Date.now() / 1000;
  const start = Math.min(t.length ? t[0] : now - 60, xs.length ? xs[0] : now);
  charts.deaths.setData([xs, ...order.map((id, i) => marks.map((d) => (!d.mark && d.brain === id ? i : null))),
    marks.map((d) => (d.mark && order.includes(d.brain) ? order.indexOf(d.brain) : null))], false);
  charts.deaths.setScale("x", { min: start, max: Math.max(now, start + 30) });
}

function pushSample(tick) {
  const m = tick.memory || {};
  if (m.system_total) sysTotal = m.system_total;
  series.t.push(tick.t);
  series.rss.push(m.process_rss != null ? m.process_rss / 1048576 : null);
  series.gpu.push(m.gpu_used != null ? m.gpu_used / 1048576 : null);
  series.sysPct.push(m.system_total ? (100 * (m.system_total - m.system_available)) / m.system_total : null);
  for (const id of order) {
    const b = (tick.brains || {})[id];
    (series.toks[id] ||= []).push(b ? b.tok_s : null);
    (series.jar[id] ||= []).push(b && b.jar_tokens ? (100 * b.jar_used) / b.jar_tokens : null);
  }
  if (series.t.length > SERIES_MAX) {
    for (const k of ["t", "rss", "gpu", "sysPct"]) series[k].shift();
    for (const id of order) { series.toks[id].shift(); series.jar[id].shift(); }
  }
}

function loadSeries(s, mem) {
  if (mem && mem.system_total) sysTotal = mem.system_total;
  series = { t: s.t.slice(), rss: s.process_rss.map((x) => x / 1048576), gpu: s.gpu_used.map((x) => (x == null ? null : x / 1048576)),
    sysPct: s.system_used.map((x) => (sysTotal ? (100 * x) / sysTotal : null)), toks: {}, jar: {} };
  for (const id of order) {
    const b = s.brains[id] || { tok_s: [], jar: [] };
    series.toks[id] = b.tok_s.slice();
    series.jar[id] = b.jar.map((x) => x * 100);
  }
}

window.addEventListener("resize", () => {
  for (const [k, c] of Object.entries(charts)) c.setSize({ width: chartWidth("chart-" + k), height: c.height });
});

// ---- the stream ----------------------------------------------------------------------------
function onSnapshot(s) {
  me = s.you || me;
  document.body.classList.toggle("operator", me.role === "operator");
  $("who").textContent = `${me.user} · ${me.role}`;
  $("hive-mode").textContent = s.hive.mode || "";
  hiveStarted = Date.parse(s.hive.started) || Date.now();
  hasGpu = !!(s.memory && s.memory.gpu_used != null);
  buildPanels(s.brains);
  for (const b of s.brains) {
    const p = brains.get(b.id);
    setDeaths(p, b.deaths, false);
    p.lifeNo = b.life;
    p.life.textContent = `life ${b.life}`;
    p.jarTokens = b.jar.tokens;
    setJar(p, b.state === "dead" ? 0 : b.jar.used, b.jar.tokens);
    p.past.textContent = "";
    for (const t of (s.thoughts[b.id] || []).slice(-PAST_KEEP)) pushPast(p, t.text, t.complete);
    setNow(p, b.current || "");
    p.el.classList.remove("dead", "dying", "reborn");
    setState(p, b.state);
    showSpeed(p);
    graphNodes.get(b.id)?.classList.toggle("dead", b.state === "dead");
  }
  deaths = s.deaths.map((d) => ({ t: d.time_us / 1e6, brain: d.brain, cause: d.cause, crash_count: d.crash_count }));
  loadSeries(s.series, s.memory);
  redrawCharts();
  $("stat-deaths").textContent = s.hive.deaths;
  loadLab(true);
  if (s.reason === "resync") toast("caught up with the hive");
}

function onTick(t) {
  pushSample(t);
  let deathsTotal = 0;
  for (const id of order) {
    const b = (t.brains || {})[id], p = brains.get(id);
    if (!b || !p) continue;
    deathsTotal += b.deaths;
    // A tick is a sample of the hive's view; right after a death or resurrection event the
    // event is fresher than a sample that still says the opposite.
    const tickDead = b.state === "dead" || b.state === "dying";
    if (!(Date.now() - p.eventAt < 2000 && (p.lastEvent === "death") !== tickDead)) setState(p, b.state);
    p.jarTokens = b.jar_tokens;
    if (isDead(p)) setJar(p, 0, b.jar_tokens);
    else if (Date.now() - p.tokenAt > 1500) setJar(p, b.jar_used, b.jar_tokens);
    if (b.deaths > p.deaths) setDeaths(p, b.deaths, false);
    if (b.life !== p.lifeNo && !p.el.classList.contains("dead")) { p.lifeNo = b.life; p.life.textContent = `life ${b.life}`; }
    graphNodes.get(id)?.classList.toggle("dead", b.state === "dead");
  }
  $("stat-deaths").textContent = deathsTotal;
  $("stat-toks").textContent = (t.tok_s || 0).toFixed(1);
  $("stat-rss").textContent = fmtBytes(t.memory && t.memory.process_rss);
  redrawCharts();
}

function onEvent(m) {
  const p = m.brain ? brains.get(m.brain) : null;
  const ms = Date.parse(m.ts) || Date.now();
  switch (m.type) {
    case "token":
      if (p && !isDead(p)) { appendNow(p, m.text || ""); tokenSeen(p, m); }
      break;
    case "thought":
      if (p) { pushPast(p, m.text, m.complete); setNow(p, ""); }
      break;
    case "death":
      if (p) die(p, m.cause || "death", m.crash_count);
      graphNodes.get(m.brain)?.classList.add("dead");
      deaths.push({ t: ms / 1000, brain: m.brain, cause: m.cause, crash_count: m.crash_count });
      if (deaths.length > 1000) deaths.shift();
      logLine("crash", ms, `${m.brain} died (${m.cause}) · death #${m.crash_count}`);
      redrawCharts();
      break;
    case "resurrection":
      if (p) { revive(p, m.crash_count + 1); setState(p, "thinking"); }
      graphNodes.get(m.brain)?.classList.remove("dead");
      logLine("resurrection", ms, `${m.brain} resurrected · life ${m.crash_count + 1}`);
      break;
    case "observe":
      if (m.from) flashEdge(m.from, m.brain);
      break;
    case "operator":
      logLine("operator", ms, `${m.action} ${m.brain || ""}${m.text ? ": " + m.text : ""}`);
      break;
    case "error":
      if (m.error === "Authentication required") { location.href = "/login" + location.search; return; }
      logLine("crash", ms, `${m.brain ? m.brain + ": " : ""}${m.text || m.error || "error"}`);
      break;
    case "watchdog":
      logLine("crash", ms, `watchdog ${m.action}: ${m.text || ""}`);
      break;
    case "lab":
      onLabEvent(m, ms);
      break;
    default:
      break;
  }
}


// ---- the Lab page (an experiment's run: GET /api/lab, "lab" events) -------------------------
function labEventText(e) {
  let what = {};
  try { what = JSON.parse(e.what || e.text || "{}") || {}; } catch { what = {}; }
  if (e.action === "answer")
    return `${e.brain} answered ${e.id}${what.score != null ? " (" + what.score + ")" : ""}: ${String(what.answer || "").slice(0, 160)}`;
  return `${e.action} ${e.id} on ${e.brain} (life ${e.life ?? e.crash_count + 1}, thought ${e.thought})`;
}

function labEventLine(e, ms) {
  const li = document.createElement("li");
  li.className = e.action === "answer" ? "answer" : "intervention";
  const t = document.createElement("time");
  t.textContent = clock(ms);
  const s = document.createElement("span");
  s.textContent = labEventText(e);
  li.append(t, s);
  const list = $("lab-events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function renderLab(j) {
  $("lab-name").textContent = j.name;
  $("lab-question").textContent = j.question || "";
  $("lab-meta").textContent = `seed ${j.seed} · ${j.replicates} replicate${j.replicates === 1 ? "" : "s"} · ${j.arms.length} arms` +
    (j.thoughts ? ` · until ${j.thoughts} thoughts` : "") + (j.duration_s ? ` · ${fmtDuration(j.duration_s)}` : "");
  const arms = $("lab-arms");
  arms.textContent = "";
  for (const a of j.arms) {
    const d = document.createElement("div");
    d.className = "lab-arm";
    d.dataset.arm = a.name;
    const h = document.createElement("h3");
    h.textContent = a.name;
    const dl = document.createElement("dl");
    for (const [k, v] of [["brains alive", `${a.alive} / ${a.brains_n}`], ["lives", a.lives], ["deaths", a.deaths],
      ["thoughts", a.thoughts], ["interventions", a.interventions.join(", ") || "none"]]) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k; dd.textContent = String(v);
      dd.className = k.replace(/ /g, "-");
      dl.append(dt, dd);
    }
    const ul = document.createElement("ul");
    ul.className = "lab-answers";
    for (const e of j.events.filter((e) => e.action === "answer" && e.brain.startsWith(a.name + "/")).slice(0, 3)) {
      const li = document.createElement("li");
      li.textContent = labEventText(e);
      ul.append(li);
    }
    d.append(h, dl, ul);
    arms.append(d);
  }
  const iv = $("lab-iv");
  if (!iv.options.length) {
    for (const x of j.interventions) iv.append(new Option(`${x.name} (${x.kind} ${x.brain})`, x.name));
    iv.onchange = () => labBrains();
  }
  labBrains();
}

function labBrains() {
  const iv = lab && lab.interventions.find((x) => x.name === $("lab-iv").value);
  const br = $("lab-brain");
  const keep = br.value;
  br.textContent = "";
  if (!iv) return;
  for (const a of lab.arms) for (const b of a.brains) if (b.id.endsWith("/" + iv.brain)) br.append(new Option(b.id, b.id));
  if (keep) br.value = keep;
}

async function loadLab(full) {
  const r = await fetch("/api/lab", { credentials: "same-origin" }).catch(() => null);
  if (!r || !r.ok) return;
  const j = await r.json();
  $("lab").hidden = !j.on;
  if (!j.on) { lab = null; return; }
  lab = j;
  window.brainjarLab = j; // for the browser test
  renderLab(j);
  if (full) {
    $("lab-events").textContent = "";
    for (const e of j.events.slice().reverse()) labEventLine(e, e.time_us / 1000);
    labMarks = j.events.filter((e) => e.action !== "answer").map((e) => ({ t: e.time_us / 1e6, brain: e.brain, id: e.id, action: e.action }));
    redrawCharts();
  }
}

function onLabEvent(m, ms) {
  if (!lab) return;
  labEventLine(m, ms);
  if (m.action !== "answer") {
    labMarks.push({ t: ms / 1000, brain: m.brain, id: m.id, action: m.action });
    if (labMarks.length > 1000) labMarks.shift();
    redrawCharts();
  }
}

async function fireIntervention(ev) {
  ev.preventDefault();
  const name = $("lab-iv").value, brain = $("lab-brain").value;
  try {
    const r = await fetch("/api/lab/interventions", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name, brain }),
    });
    const j = await r.json().catch(() => ({}));
    if (r.status === 401) { location.href = "/login"; return; }
    if (!r.ok) { toast(`${name} on ${brain} refused: ${j.error || r.status}`, true); return; }
    toast(`${name} on ${brain}: accepted; it is done at its engine's next step`);
  } catch (e) {
    toast(`${name} on ${brain}: brainjar does not answer`, true);
  }
}
setInterval(() => { if (lab) loadLab(false); }, 3000);

let ws = null, backoff = 500;
function connect() {
  const conn = $("conn");
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { conn.className = "conn live"; backoff = 500; };
  ws.onmessage = (e) => {
    let data;
    try { data = JSON.parse(e.data); } catch { return; }
    // One message, or several queued ones as an array.
    for (const m of Array.isArray(data) ? data : [data]) {
      if (m.type === "snapshot") onSnapshot(m);
      else if (m.type === "tick") onTick(m);
      else if (m.type === "resync") { /* the snapshot follows */ }
      else onEvent(m);
    }
  };
  ws.onclose = () => {
    conn.className = "conn lost";
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}

setInterval(() => {
  if (hiveStarted) $("stat-uptime").textContent = fmtDuration((Date.now() - hiveStarted) / 1000);
}, 1000);

async function main() {
  if (KIOSK) document.body.classList.add("kiosk");
  $("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
    location.href = "/login";
  });
  const r = await fetch("/api/me", { credentials: "same-origin" }).catch(() => null);
  if (!r || r.status === 401) { location.href = "/login" + location.search; return; }
  me = await r.json();
  document.body.classList.toggle("operator", me.role === "operator");
  $("lab-fire").addEventListener("submit", fireIntervention);
  connect();
}
main();
