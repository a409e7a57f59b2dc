// eddy web page: reads the JSON API and redraws every 2 s. No framework; the
// charts are uPlot (small, fast, canvas), vendored by scripts/vendor-web.sh.
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

// ---- formatting -----------------------------------------------------------

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function num(n) {
  if (n == null || isNaN(n)) return "–";
  return Math.round(n).toLocaleString("en-US");
}
function count(n) {
  if (n == null || isNaN(n)) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(0) + "k";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return n >= 10 || Number.isInteger(n) ? Math.round(n).toString() : n.toFixed(1);
}
function bytes(n) {
  if (n == null || isNaN(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : 1)) + " " + u[i];
}
function ms(n) {
  if (n == null || isNaN(n)) return "–";
  if (n < 1000) return Math.round(n) + " ms";
  const s = n / 1000;
  if (s < 60) return parseFloat(s.toFixed(s < 10 ? 2 : 1)) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + Math.floor(s % 60) + "s";
  const h = Math.floor(m / 60);
  if (h < 48) return h + "h " + (m % 60) + "m";
  const d = Math.floor(h / 24);
  return d < 365 ? d + "d " + (h % 24) + "h" : (d / 365).toFixed(1) + " years";
}
function uptime(sec) {
  return sec < 60 ? Math.floor(sec) + "s" : ms(sec * 1000);
}
function ago(tsMs) {
  if (!tsMs) return "–";
  const d = Date.now() - tsMs;
  return d < 0 ? "just now" : ms(d) + " ago";
}
function clock(tsMs) {
  if (!tsMs) return "–";
  const d = new Date(tsMs);
  const p = (x, w = 2) => String(x).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
function pct(x) { return x == null ? "–" : (x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0) + "%"; }
function bar(x) {
  const cls = x > 0.5 ? "bad" : x > 0.1 ? "warn" : "";
  return `<span class="bar ${cls}"><i data-w="${Math.min(100, Math.max(0, x * 100)).toFixed(1)}"></i></span>`;
}
// Bars get their width through the CSSOM: the page's CSP forbids inline styles.
function sizeBars(root) {
  root.querySelectorAll(".bar i[data-w]").forEach((i) => { i.style.width = i.dataset.w + "%"; });
}
function table(el, head, rows, empty) {
  const th = head.map((h) => {
    const [label, cls] = Array.isArray(h) ? h : [h, ""];
    return `<th class="${cls}">${esc(label)}</th>`;
  }).join("");
  const body = rows.length ? rows.join("") :
    `<tr><td class="empty" colspan="${head.length}">${esc(empty || "nothing yet")}</td></tr>`;
  el.innerHTML = `<thead><tr>${th}</tr></thead><tbody>${body}</tbody>`;
  sizeBars(el);
}
function kv(el, pairs) {
  el.innerHTML = pairs.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("");
}
function kpi(label, value, sub, cls) {
  return `<div class="kpi ${cls || ""}"><div class="label">${esc(label)}</div>` +
    `<div class="value">${value}</div><div class="sub">${sub || "&nbsp;"}</div></div>`;
}

// ---- API --------------------------------------------------------------------

let token = sessionStorage.getItem("eddy-token") || "";

async function api(path, opts) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  const r = await fetch(path, Object.assign({ headers, cache: "no-store" }, opts));
  if (r.status === 401) {
    $("token-form").hidden = false;
    throw new Error("the API needs a token");
  }
  const body = await r.json().catch(() => ({}));
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("eddy-token", token);
  $("token-form").hidden = true;
  refresh();
});

// ---- state kept between polls -------------------------------------------------

let selected = null; // checkpoint id whose details are open
let scrollOnDetails = false; // set by a click, not by loading a link
let view = "overview";

// ---- header -------------------------------------------------------------------

function renderHeader(o) {
  $("appliance").textContent = o.appliance_id;
  const v = /^[0-9]/.test(o.version) ? "v" + o.version : o.version;
  $("version").textContent = v + " · up " + uptime(o.uptime_seconds);
  document.title = "eddy · " + o.appliance_id;
  const h = $("health");
  if (o.stalled) { h.textContent = "STALLED"; h.className = "pill bad"; }
  else if (!o.ready) { h.textContent = "recovering"; h.className = "pill info"; }
  else if (!o.running) { h.textContent = "restarting"; h.className = "pill warn"; }
  else { h.textContent = "running"; h.className = "pill ok"; }
  const sl = $("status-line");
  sl.textContent = o.status || "";
  sl.className = "status-line" + (o.stalled ? " stalled" : "");
}

// ---- overview -------------------------------------------------------------------

// reloadKPI is the last reload: when, its outcome, and what changed or why not.
function reloadKPI(r) {
  if (!r) return kpi("Last reload", "–", "none since start");
  const keys = r.keys || [];
  const what = r.reason ? r.reason : (keys.length ? keys.join(", ") : "nothing changed") +
    (r.savepoint ? " · savepoint " + r.savepoint : "");
  return kpi("Last reload", esc(r.outcome), ago(Date.parse(r.time)) + " · " + esc(what.slice(0, 120)),
    r.outcome === "applied" ? "ok" : r.outcome === "failed" ? "bad" : "warn");
}

function renderOverview(o, cps) {
  const now = Date.now();
  const tasks = o.tasks || [];
  const ingest = o.ingest || [];
  const lag = ingest.reduce((a, i) => a + Math.max(0, i.lag), 0);
  const marks = tasks.filter((t) => t.watermark != null).map((t) => t.watermark);
  const wmLag = marks.length ? now - Math.min(...marks) : null;
  const last = cps && cps.latest && cps.latest.completed;
  const keyed = tasks.filter((t) => t.kind !== "source").length;
  $("kpis").innerHTML = [
    kpi("Throughput", count(o.records_per_second) + "<small> rec/s</small>", `${tasks.length} tasks, ${keyed} keyed`),
    kpi("Back-pressure", pct(o.back_pressure), "busiest task, last 5 s",
      o.back_pressure > 0.5 ? "bad" : o.back_pressure > 0.1 ? "warn" : "ok"),
    kpi("Ingest backlog", count(lag), "messages not yet read", lag > 10000 ? "warn" : ""),
    kpi("Watermark lag", wmLag == null ? "–" : ms(wmLag), "now − lowest watermark"),
    kpi("Last checkpoint", last ? "#" + last.id : "–", last ? ago(last.latest_ack_timestamp) : (cps ? "none yet" : "checkpointing off")),
    kpi("Dead letters", num(o.dead_letters), `${num(o.late_events)} late events`, o.dead_letters > 0 ? "warn" : ""),
    kpi("Job restarts", num(o.job_restarts), o.last_error ? esc(o.last_error.slice(0, 60)) : "no failure", o.job_restarts > 0 ? "warn" : ""),
    reloadKPI(o.last_reload),
  ].join("");

  table($("tasks"),
    ["Task", "Kind", ["Records in", "num"], ["Records out", "num"], ["In/s", "num"], ["Out/s", "num"],
      "Back-pressure", "Watermark", ["Watermark lag", "num"], ["Dead letters", "num"], ["Late", "num"]],
    tasks.map((t) => {
      const tr = (o.task_rates || {})[t.name];
      const r = tr ? { in: tr.records_in_per_second, out: tr.records_out_per_second, bp: tr.back_pressure } : {};
      return `<tr><td class="mono">${esc(t.name)}</td><td>${esc(t.kind)}</td>` +
        `<td class="num">${num(t.records_in)}</td><td class="num">${num(t.records_out)}</td>` +
        `<td class="num">${count(r.in)}</td><td class="num">${count(r.out)}</td>` +
        `<td>${bar(r.bp || 0)}${pct(r.bp)}</td>` +
        `<td class="mono">${esc(t.watermark_time || "–")}</td>` +
        `<td class="num">${t.watermark != null ? ms(now - t.watermark) : "–"}</td>` +
        `<td class="num">${num(t.dead_letters)}</td><td class="num">${num(t.late_events)}</td></tr>`;
    }), "no job running");

  table($("ingest"),
    ["Source", "MQTT", ["Log size", "num"], ["First offset", "num"], ["Read offset", "num"], ["Next offset", "num"],
      ["Lag", "num"], ["Received", "num"], ["Acknowledged", "num"], "State"],
    ingest.map((i) => {
      const state = i.error ? `<span class="err">${esc(i.error)}</span>` :
        i.full ? `<span class="status FAILED">FULL</span>` : "ok";
      return `<tr><td class="mono">${esc(i.source)}</td>` +
        `<td>${i.connected ? '<span class="status COMPLETED">connected</span>' : '<span class="status FAILED">down</span>'}</td>` +
        `<td class="num">${bytes(i.size_bytes)}</td><td class="num">${num(i.first_offset)}</td>` +
        `<td class="num">${num(i.read_offset)}</td><td class="num">${num(i.next_offset)}</td>` +
        `<td class="num">${num(i.lag)}</td><td class="num">${num(i.messages_received)}</td>` +
        `<td class="num">${num(i.messages_acknowledged)}</td><td>${state}</td></tr>`;
    }), "no sources");
}

// ---- broker drops (GET /api/v1/overview → broker; docs/broker.md) ------------
// A warning under the status line, on every view, while the broker's own
// counter of dropped messages is above 0: those readings never reached eddy.

// banner returns the warning element with this id under the status line,
// creating it.
function banner(id) {
  let el = document.getElementById(id);
  if (!el) {
    el = document.createElement("div");
    el.id = id;
    el.className = "banner";
    el.setAttribute("role", "alert");
    $("status-line").after(el);
  }
  return el;
}

function renderBrokerDrops(o) {
  const el = banner("broker-drops");
  const b = o.broker;
  if (!b || !b.drops_reported || !(b.messages_dropped > 0)) { el.hidden = true; return; }
  const seen = b.messages_dropped_seen > 0
    ? `, ${num(b.messages_dropped_seen)} while eddy watched, last ${ago(Date.parse(b.last_drop_at))}` : "";
  const fix = b.kind === "embedded"
    ? "The embedded broker's limits were reached: use mosquitto in production."
    : "Its queue for a disconnected client was full: raise max_queued_messages / max_queued_bytes in " +
      "/etc/mosquitto/conf.d/eddy.conf and restart mosquitto (see /usr/share/doc/eddy/broker.md).";
  el.textContent = `The MQTT broker${b.version ? " (" + b.version + ")" : ""} has dropped ` +
    `${num(b.messages_dropped)} messages since it started${seen}: readings were lost before they reached eddy. ${fix}`;
  el.hidden = false;
}

// ---- full sink spools (GET /api/v1/overview → sinks[].spool; docs/configuration.md) --
// A warning under the status line while some sink's spool has reached
// sinks[].spool.max_size: intake is paused until that sink drains it.

function renderSpoolFull(o) {
  const el = banner("spool-full");
  const full = (o.sinks || []).filter(s => s.spool && s.spool.full);
  if (full.length === 0) { el.hidden = true; return; }
  el.textContent = "Intake paused: the spool of sink " + full.map(s =>
    `${s.name} (${bytes(s.spool.bytes)} of ${bytes(s.spool.max_size)}, published up to checkpoint ${s.published_up_to}` +
    (s.last_error ? `, last error: ${s.last_error.slice(0, 80)}` : "") + ")").join(", ") +
    " is full (sinks[].spool.max_size). The broker holds new input; it resumes by itself when the sink takes its output.";
  el.hidden = false;
}

// ---- checkpoints ---------------------------------------------------------------

function renderCheckpoints(cps, remote) {
  $("cp-off").hidden = !!cps;
  if (!cps) {
    $("cp-counts").innerHTML = "";
    ["cp-latest", "cp-summary", "cp-history"].forEach((id) => { $(id).innerHTML = ""; });
    return;
  }
  const c = cps.counts;
  $("cp-counts").innerHTML = [
    kpi("Triggered", num(c.total), "since the job started"),
    kpi("In progress", num(c.in_progress), "", c.in_progress > 0 ? "" : ""),
    kpi("Completed", num(c.completed), "", "ok"),
    kpi("Failed", num(c.failed), "", c.failed > 0 ? "bad" : ""),
    kpi("Restored", num(c.restored), cps.latest.restored ? "from #" + cps.latest.restored.id : "started empty"),
  ].join("");

  const L = cps.latest;
  const line = (x) => x ? `#${x.id} · ${clock(x.latest_ack_timestamp || x.trigger_timestamp)} (${ago(x.latest_ack_timestamp || x.trigger_timestamp)})` : "–";
  const rows = [
    ["Completed", line(L.completed)],
    ["  end to end", L.completed ? ms(L.completed.end_to_end_duration) : "–"],
    ["  checkpointed / full size", L.completed ? `${bytes(L.completed.checkpointed_size)} / ${bytes(L.completed.state_size)}` : "–"],
    ["  path", L.completed ? `<span class="mono">${esc(L.completed.external_path)}</span>` : "–"],
    ["Failed", L.failed ? `#${L.failed.id} · ${clock(L.failed.failure_timestamp)} <div class="err">${esc(L.failed.failure_message)}</div>` : "none"],
    ["Restored", L.restored ? `#${L.restored.id} from ${esc(L.restored.source)} in ${ms(L.restored.restore_duration)} · ${clock(L.restored.restore_timestamp)}` : "none (started empty)"],
  ];
  kv($("cp-latest"), rows);

  if (remote) {
    const pairs = [
      ["Remote", `<span class="mono">${esc(remote.remote)}</span>`],
      ["Link", remote.link_up ? '<span class="status COMPLETED">up</span>' : '<span class="status FAILED">down</span>'],
      ["Newest remote checkpoint", remote.newest_checkpoint ? `#${remote.newest_checkpoint} (${ago(remote.newest_checkpoint_timestamp)})` : "none yet"],
      ["Behind local", ms(remote.lag_ms)],
      ["Pending / sent", `${bytes(remote.bytes_pending)} / ${bytes(remote.bytes_sent)}`],
    ];
    if (remote.last_error) pairs.push(["Last error", `<span class="err">${esc(remote.last_error)}</span>`]);
    const more = Object.entries(remote.details || {}).map(([k, v]) =>
      `<tr><th>${esc(k)}</th><td class="mono">${esc(typeof v === "object" ? JSON.stringify(v) : v)}</td></tr>`).join("");
    if (more) {
      const open = $("remote-more") && $("remote-more").open ? " open" : "";
      pairs.push(["All uploader figures", `<details id="remote-more"${open}><summary>show</summary><table class="kv">${more}</table></details>`]);
    }
    kv($("cp-remote"), pairs);
  } else {
    kv($("cp-remote"), [["Upload", "off (upload.remote is empty)"]]);
  }

  const s = cps.summary;
  const srow = (label, m, f) => `<tr><td>${label}</td>` +
    ["min", "avg", "max", "p50", "p90", "p99"].map((k) => `<td class="num">${c.completed ? f(m[k]) : "–"}</td>`).join("") + "</tr>";
  table($("cp-summary"), ["", ["Min", "num"], ["Average", "num"], ["Max", "num"], ["p50", "num"], ["p90", "num"], ["p99", "num"]], [
    srow("End to end duration", s.end_to_end_duration, ms),
    srow("Checkpointed data size", s.checkpointed_size, bytes),
    srow("Full checkpoint data size", s.state_size, bytes),
    srow("Processed in-flight data", s.processed_data, num),
  ]);

  table($("cp-history"),
    ["ID", "Status", "Acknowledged", "Trigger time", "Latest ack", ["End to end", "num"],
      ["Checkpointed size", "num"], ["Full size", "num"], "Remote"],
    (cps.history || []).map((h) => {
      const remoteCell = h.remote_status ? esc(h.remote_status) : "–";
      const failed = h.failure_message ? `<div class="err">${esc(h.failure_message)}</div>` : "";
      return `<tr class="clickable${h.id === selected ? " selected" : ""}" data-id="${h.id}">` +
        `<td class="mono">#${h.id}</td><td><span class="status ${esc(h.status)}">${esc(h.status)}</span>${failed}</td>` +
        `<td>${h.num_acknowledged_subtasks}/${h.num_subtasks}</td>` +
        `<td>${clock(h.trigger_timestamp)}</td><td>${h.latest_ack_timestamp ? clock(h.latest_ack_timestamp) : "–"}</td>` +
        `<td class="num">${h.status === "IN_PROGRESS" ? ms(Date.now() - h.trigger_timestamp) + "…" : ms(h.end_to_end_duration)}</td>` +
        `<td class="num">${bytes(h.checkpointed_size)}</td><td class="num">${bytes(h.state_size)}</td>` +
        `<td>${remoteCell}</td></tr>`;
    }), "no checkpoint yet");
  $("cp-history").querySelectorAll("tr.clickable").forEach((tr) => {
    tr.addEventListener("click", () => {
      const id = Number(tr.dataset.id);
      scrollOnDetails = selected !== id;
      location.hash = selected === id ? "#checkpoints" : "#checkpoints/" + id;
    });
  });
}

async function renderDetails() {
  const el = $("cp-details");
  if (selected == null) { el.innerHTML = ""; return; }
  const d = await api(`api/v1/checkpoints/details/${selected}`);
  if (!d) { el.innerHTML = `<div class="card empty">Checkpoint #${selected} is no longer in the history.</div>`; return; }
  const tasks = Object.values(d.tasks || {}).sort((a, b) => a.id.localeCompare(b.id));
  let html = `<div class="details"><div class="details-head"><h2>Checkpoint #${d.id} ` +
    `<span class="status ${esc(d.status)}">${esc(d.status)}</span></h2>` +
    `<span class="hint">triggered ${clock(d.trigger_timestamp)} · end to end ${ms(d.end_to_end_duration)} · ` +
    `${bytes(d.checkpointed_size)} checkpointed of ${bytes(d.state_size)}</span>` +
    `<button class="link" id="close-details">Close</button></div>` +
    `<div class="card"><table id="cp-tasks"></table></div></div>`;
  el.innerHTML = html;
  $("close-details").addEventListener("click", () => { location.hash = "#checkpoints"; });
  const rows = [];
  for (const t of tasks) {
    rows.push(`<tr><td class="mono"><b>${esc(t.id)}</b></td><td>${t.num_acknowledged_subtasks}/${t.num_subtasks}</td>` +
      `<td>${t.latest_ack_timestamp ? clock(t.latest_ack_timestamp) : "–"}</td>` +
      `<td class="num">${ms(t.end_to_end_duration)}</td><td class="num">${bytes(t.checkpointed_size)}</td>` +
      `<td class="num">${bytes(t.state_size)}</td><td class="num">${ms(t.max_sync_duration)}</td>` +
      `<td class="num">${ms(t.max_async_duration)}</td><td class="num">${ms(t.max_alignment_duration)}</td>` +
      `<td class="num">${ms(t.max_start_delay)}</td><td class="num">${num(t.processed_data)}</td></tr>`);
    for (const s of t.subtasks || []) {
      rows.push(`<tr class="sub"><td class="mono">${esc(s.task)} (${s.index})</td>` +
        `<td>${s.status === "completed" ? "acked" : "pending"}</td><td>${s.ack_timestamp ? clock(s.ack_timestamp) : "–"}</td>` +
        `<td class="num">${ms(s.end_to_end_duration)}</td><td class="num">${bytes(s.checkpointed_size)}</td>` +
        `<td class="num">${bytes(s.state_size)}</td><td class="num">${ms(s.checkpoint.sync)}</td>` +
        `<td class="num">${ms(s.checkpoint.async)}</td><td class="num">${ms(s.alignment.duration)}</td>` +
        `<td class="num">${ms(s.start_delay)}</td><td class="num">${num(s.alignment.processed)}</td></tr>`);
    }
  }
  if (scrollOnDetails) {
    scrollOnDetails = false;
    el.scrollIntoView({ block: "start" });
  }
  table($("cp-tasks"), ["Task / subtask", "Acked", "Latest ack", ["End to end", "num"], ["Checkpointed", "num"],
    ["Full size", "num"], ["Sync", "num"], ["Async", "num"], ["Alignment", "num"], ["Start delay", "num"],
    ["Processed", "num"]], rows, "no tasks");
}

// ---- configuration -------------------------------------------------------------

function yaml(v, indent, path, reloadable) {
  const pad = "  ".repeat(indent);
  const scalar = (x) => {
    if (x === null || x === undefined) return '<span class="n">null</span>';
    if (typeof x === "number" || typeof x === "boolean") return `<span class="n">${esc(x)}</span>`;
    if (x === "") return '<span class="s">""</span>';
    return `<span class="s">${esc(x)}</span>`;
  };
  let out = "";
  if (Array.isArray(v)) {
    if (!v.length) return " []\n";
    out += "\n";
    v.forEach((item, i) => {
      if (item !== null && typeof item === "object" && !Array.isArray(item)) {
        const body = yaml(item, indent + 1, `${path}[${i}]`, reloadable).replace(/^\n/, "");
        out += pad + "- " + body.slice((pad + "  ").length);
      } else {
        out += `${pad}- ${scalar(item)}\n`;
      }
    });
    return out;
  }
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v).sort();
    if (!keys.length) return " {}\n";
    out += "\n";
    for (const k of keys) {
      const p = path ? path + "." + k : k;
      const child = v[k];
      const isNode = child !== null && typeof child === "object";
      const key = `<span class="k">${esc(k)}</span>:`;
      const line = isNode ? key + yaml(child, indent + 1, p, reloadable) : `${key} ${scalar(child)}\n`;
      out += pad + (reloadable.includes(p) ? `<span class="r">${line.replace(/\n$/, "")}</span>\n` : line);
    }
    return out;
  }
  return " " + scalar(v) + "\n";
}

function renderConfig(c, cc) {
  if (c) {
    $("config-file").textContent = c.file || "";
    $("config-yaml").innerHTML = yaml(c.config, 0, "", c.reloadable || []).replace(/^\n/, "");
    $("config-reloadable").innerHTML = (c.reloadable || []).map((k) => `<code>${esc(k)}</code>`).join(", ");
  }
  if (cc) {
    kv($("config-cp"), [
      ["Mode", esc(cc.mode)], ["Interval", ms(cc.interval)], ["Min pause", ms(cc.min_pause)],
      ["Timeout", ms(cc.timeout)], ["Max concurrent", num(cc.max_concurrent)],
      ["Tolerable failures", num(cc.tolerable_failed_checkpoints)], ["Incremental", esc(cc.incremental)],
      ["Local recovery", esc(cc.local_recovery)], ["Retained", num(cc.num_retained)],
      ["Compression", esc(cc.compression)], ["State backend", esc(cc.state_backend)],
      ["Checkpoint storage", `<span class="mono">${esc(cc.checkpoint_storage)}</span>`],
    ]);
  }
}

// ---- charts (uPlot, vendored under /vendor/) -------------------------------------

// Series colours; the page test looks for these pixels in the canvases.
const COLOR = {
  in: "#0f766e", out: "#7c3aed", bp: "#d97706", lag: "#2563eb",
  e2e: "#0f766e", start: "#2563eb", align: "#d97706", sync: "#7c3aed", async: "#db2777",
  ckpt: "#0f766e", full: "#64748b", headroom: "#16a34a", replay: "#0891b2",
};
const CHART_H = 170;
const charts = {}; // element id → uPlot

function rgba(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
}
function axis(fmt, size, extra) {
  return Object.assign({
    stroke: "#6b7785", font: "11px system-ui, sans-serif", size: size || 56,
    grid: { stroke: "#eef2f5", width: 1 }, ticks: { stroke: "#e3e8ee", width: 1, size: 4 },
    values: fmt ? (u, vals) => vals.map((v) => fmt(v)) : undefined,
  }, extra);
}
// The legend shows the value under the cursor, and the newest one while
// the cursor is elsewhere.
function legendValue(fmt) {
  return (u, v, sidx, idx) => {
    if (idx == null) v = last(u.data[sidx]);
    return v == null ? "–" : fmt(v);
  };
}
function line(label, color, fmt, fill, scale) {
  return { label, scale: scale || "y", stroke: color, width: 2, fill: fill ? rgba(color, 0.1) : undefined,
    spanGaps: false, points: { show: false }, value: legendValue(fmt) };
}
// A rate sampled at t is the average over the 5 s before t: a step that
// holds from the previous sample to this one (output comes in bursts as
// windows fire, and a line would draw ramps that never happened).
function steps(label, color, fmt, fill, scale) {
  return Object.assign(line(label, color, fmt, fill, scale), { paths: uPlot.paths.stepped({ align: -1 }) });
}
function dots(label, color, fmt) {
  return { label, stroke: color, width: 2, points: { show: true, size: 6, fill: color }, value: legendValue(fmt) };
}
function bars(label, color, fmt) {
  return { label, stroke: color, width: 1, fill: color, points: { show: false },
    paths: uPlot.paths.bars({ size: [0.6, 34] }), value: legendValue(fmt) };
}
// Tick steps of 1, 2, 5 × 1024^k for sizes.
const BYTE_INCRS = [0, 1, 2, 3, 4].flatMap((k) => [1, 2, 5, 10, 20, 50, 100, 200, 500].map((m) => m * 1024 ** k));
// A y scale from 0 to a little above the largest value.
function fromZero(minMax) {
  return { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.12 : minMax] };
}
const timeX = { label: "Time", value: (u, v, sidx, idx) => (idx == null ? "latest" : clock(v * 1000).slice(0, 8)) };
// Time ticks on one line: hh:mm:ss within ten minutes, hh:mm beyond.
const timeAxis = axis(null, 28, {
  values: (u, vals) => {
    const long = vals.length > 1 && vals[vals.length - 1] - vals[0] > 600;
    return vals.map((v) => clock(v * 1000).slice(0, long ? 5 : 8));
  },
});
const idX = { label: "Checkpoint", value: (u, v, sidx, idx) => (idx == null ? "latest" : "#" + v) };
const idAxis = Object.assign(axis((v) => (Number.isInteger(v) ? "#" + v : ""), 30), { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] });
const idScale = { time: false, range: (u, lo, hi) => [lo - 0.6, hi + 0.6] };

const CHARTS = {
  "chart-throughput": () => ({
    // Results are far fewer than readings: out has its own axis (right).
    scales: { y: fromZero(1), y2: fromZero(1) },
    series: [timeX, steps("In (sources)", COLOR.in, (v) => count(v) + " rec/s", true),
      steps("Out (keyed tasks)", COLOR.out, (v) => count(v) + " rec/s", false, "y2")],
    axes: [timeAxis, axis(count, 44, { stroke: COLOR.in }),
      axis(count, 40, { scale: "y2", side: 1, stroke: COLOR.out, grid: { show: false } })],
  }),
  "chart-backpressure": () => ({
    scales: { y: { range: [0, 1] } },
    series: [timeX, steps("Busiest task", COLOR.bp, pct, true)],
    axes: [timeAxis, axis(pct, 44)],
  }),
  "chart-wmlag": () => ({
    scales: { y: fromZero(1000) },
    series: [timeX, line("Lag", COLOR.lag, ms, true)],
    axes: [timeAxis, axis(ms)],
  }),
  "chart-headroom": () => ({
    scales: { y: fromZero(2) },
    series: [timeX, steps("Headroom", COLOR.headroom, (v) => v.toFixed(1) + "×", true)],
    axes: [timeAxis, axis((v) => v + "×", 44)],
  }),
  "chart-capacity": () => ({
    scales: { x: { time: false, range: [-0.6, 2.6] }, y: fromZero(1) },
    series: [{ label: "Rate", value: (u, v) => (v == null ? "" : ["maximum", "after restore", "live"][v]) },
      bars("Maximum (checkpointing on)", COLOR.headroom, (v) => count(v) + " rec/s"),
      bars("Replay after restore", COLOR.replay, (v) => count(v) + " rec/s"),
      bars("Live", COLOR.in, (v) => count(v) + " rec/s")],
    axes: [axis((v) => ["maximum", "after restore", "live"][v] || "", 30, { incrs: [1] }), axis(count, 56)],
  }),
  "chart-cp-duration": () => ({
    scales: { x: idScale, y: fromZero(10) },
    series: [idX, bars("End to end", COLOR.e2e, ms)],
    axes: [idAxis, axis(ms)],
  }),
  "chart-cp-phases": () => ({
    scales: { x: idScale, y: fromZero(10) },
    series: [idX, dots("Start delay", COLOR.start, ms), dots("Alignment", COLOR.align, ms),
      dots("Sync", COLOR.sync, ms), dots("Async", COLOR.async, ms)],
    axes: [idAxis, axis(ms)],
  }),
  "chart-cp-size": () => ({
    scales: { x: idScale, y: fromZero(1024) },
    series: [idX, bars("Checkpointed", COLOR.ckpt, bytes), dots("Full", COLOR.full, bytes)],
    axes: [idAxis, axis((v) => bytes(v).replace(".0 ", " "), 60, { incrs: BYTE_INCRS })],
  }),
};

// draw creates or updates the chart in element id with uPlot's columnar
// data (marked as still collecting below least points), and notes on the element how many points it holds and where its
// plotting area is (data-points, data-box: the page test reads them).
function draw(id, data, least) {
  const el = $(id);
  const width = el.clientWidth;
  if (!width) return; // hidden view
  let u = charts[id];
  if (!u) {
    u = charts[id] = new uPlot(Object.assign({ width, height: CHART_H, cursor: { drag: { x: false, y: false } },
      legend: { live: true } }, CHARTS[id]()), data, el);
    new ResizeObserver(() => { if (el.clientWidth) u.setSize({ width: el.clientWidth, height: CHART_H }); }).observe(el);
  } else {
    u.setData(data);
  }
  const r = u.over.getBoundingClientRect();
  el.dataset.points = String(data[0].length);
  el.dataset.box = [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(",");
  el.classList.toggle("collecting", data[0].length < least);
}

function last(a) {
  for (let i = (a || []).length - 1; i >= 0; i--) if (a[i] != null) return a[i];
  return null;
}

function renderLastHour(h) {
  if (!h) return;
  const t = (h.time || []).map((x) => x / 1000);
  draw("chart-throughput", [t, h.records_in_per_second, h.records_out_per_second], 2);
  draw("chart-backpressure", [t, h.back_pressure], 2);
  draw("chart-wmlag", [t, h.watermark_lag_ms], 2);
  draw("chart-headroom", [t, h.headroom || []], 2);
}

function secs(v) { return v == null ? "–" : v < 0 ? "never" : ms(v * 1000); }

// The Capacity view: GET /api/v1/plan, the latest `eddy plan` and the live
// headroom on it.
function renderCapacity(p) {
  $("cap-none").hidden = !!p;
  $("cap-block").hidden = !p;
  if (!p) { $("cap-kpis").innerHTML = ""; return; }
  const r = p.plan, l = p.live || {};
  const hr = l.ratio;
  $("cap-kpis").innerHTML = [
    kpi("Headroom", hr == null || hr < 0 ? "–" : hr.toFixed(1) + "<small>×</small>", "maximum ÷ live input",
      hr != null && hr >= 0 && hr < 1.5 ? "bad" : hr != null && hr >= 0 && hr < 2 ? "warn" : "ok"),
    kpi("Catch-up after a crash", secs(l.predicted_catchup_seconds), "restore " + secs(l.restore_seconds) + " (" + esc(l.restore_from || "") + ")"),
    kpi("Outage ridden out", secs(l.ingest_outage_ride_out_seconds), "until the ingest log is full"),
    kpi("Disk full in", secs(l.disk_full_in_seconds), "at the live input"),
  ].join("");
  // Three bars, one series each, at x = 0, 1, 2.
  const max = r.max.readings_per_second, rep = r.recovery.replay_readings_per_second, live = l.live_readings_per_second || 0;
  draw("chart-capacity", [[0, 1, 2], [max, null, null], [null, rep, null], [null, null, live]], 1);
  kv($("cap-figures"), [
    ["Measured", esc(clock(Date.parse(r.time))) + " · " + esc(r.input) + " · " + r.cores + " cores"],
    ["Maximum (checkpointing on)", count(max) + " readings/s · " + count(r.max.messages_per_second) + " msgs/s"],
    ["Bottleneck", esc(r.max.bottleneck) + " · upstream back-pressure " + pct(r.max.upstream_back_pressure)],
    ["Restore (local)", secs(r.recovery.restore_seconds) + " · checkpoint " + r.recovery.checkpoint + " · " + bytes(r.recovery.checkpoint_bytes)],
    ["Restore (remote)", esc(r.recovery.remote)],
    ["Replay after restore", count(rep) + " readings/s (cold cache)"],
    ["Skew", "busiest subtask " + esc(r.skew.busiest_subtask) + " " + pct(r.skew.subtask_share) + " of " + r.skew.subtasks +
      " · busiest key group " + r.skew.busiest_key_group + " " + pct(r.skew.key_group_share)],
    ["max_parallelism", r.skew.max_parallelism + " (cores × 4 = " + r.skew.scale_target + ")" + (r.skew.room_to_scale ? "" : " · no room to scale")],
    ["Window firings", r.windows.firings + " · " + count(r.windows.results_per_firing) + " results each · burst " +
      secs(r.windows.burst_seconds) + " at up to " + count(r.windows.peak_output_per_second) + " results/s"],
  ]);
  table($("cap-advice"), ["Figure", "", "Change"], (r.advice || []).map((a) =>
    `<tr><td>${esc(a.figure)}</td><td>${a.ok ? "ok" : "<b>bad</b>"}</td><td>${esc(a.change || "")}</td></tr>`), "nothing to change");
}

function renderCheckpointCharts(h, cps) {
  $("cp-charts-block").hidden = !cps;
  if (!h || !cps) return;
  const c = h.checkpoints || {};
  const ids = c.id || [];
  draw("chart-cp-duration", [ids, c.end_to_end_duration || []], 1);
  draw("chart-cp-phases", [ids, c.max_start_delay || [], c.max_alignment_duration || [],
    c.max_sync_duration || [], c.max_async_duration || []], 1);
  draw("chart-cp-size", [ids, c.checkpointed_size || [], c.state_size || []], 1);
}

// ---- routing and polling ---------------------------------------------------------

// #overview, #checkpoints, #checkpoints/<id> (details open), #config
function route() {
  const [h, id] = (location.hash || "#overview").slice(1).split("/");
  view = ["overview", "checkpoints", "capacity", "config"].includes(h) ? h : "overview";
  selected = view === "checkpoints" && id && /^[0-9]+$/.test(id) ? Number(id) : null;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  document.querySelectorAll(".view").forEach((s) => { s.hidden = s.id !== "view-" + view; });
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const charted = view === "overview" || view === "checkpoints";
    const [o, cps, hist] = await Promise.all([api("api/v1/overview"), api("api/v1/checkpoints"),
      charted ? api("api/v1/history") : null]);
    renderHeader(o);
    renderBrokerDrops(o);
    renderSpoolFull(o);
    if (view === "overview") {
      renderOverview(o, cps);
      renderLastHour(hist);
    }
    if (view === "checkpoints") {
      const remote = await api("api/v1/upload");
      renderCheckpoints(cps, remote);
      renderCheckpointCharts(hist, cps);
      await renderDetails();
    }
    if (view === "capacity") {
      renderCapacity(await api("api/v1/plan").catch(() => null));
    }
    if (view === "config") {
      const [c, cc] = await Promise.all([api("api/v1/config"), api("api/v1/checkpoints/config")]);
      renderConfig(c, cc);
    }
    $("error").hidden = true;
    $("updated").textContent = "updated " + clock(Date.now());
  } catch (e) {
    $("error").hidden = false;
    $("error").textContent = "Cannot reach eddy: " + e.message + " (retrying every 2 s)";
    $("health").textContent = "unreachable";
    $("health").className = "pill bad";
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", () => { route(); refresh(); });
route();
refresh();
setInterval(refresh, POLL_MS);
