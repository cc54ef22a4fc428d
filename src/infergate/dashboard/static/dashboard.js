// infergate dashboard: polls the JSON API and draws the tables and the SVG charts (no library).
"use strict";

const POLL_MS = 2000;
// the page polls every POLL_MS, or as often as the server samples when its window is shorter
// (INFERGATE_DASHBOARD_SAMPLE_S, set small by the tests), or every ?poll=SECONDS of its URL (0.1 to 2)
const POLL_PARAM = Number(new URLSearchParams(location.search).get("poll")) * 1000;
let pollMs = POLL_PARAM > 0 ? Math.max(100, Math.min(POLL_MS, POLL_PARAM)) : POLL_MS;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#8e6bd8", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function fmt(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  return value.toFixed(digits);
}
const ms = (s) => (s === null || s === undefined ? "–" : (s * 1000).toFixed(0) + " ms");
const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(0) + "%");
function yesNo(b) {
  return el("span", { class: b === null || b === undefined ? "unknown" : b ? "yes" : "no" },
    b === null || b === undefined ? "?" : b ? "yes" : "no");
}
function fill(tbody, rows) { tbody.replaceChildren(...rows); }

function renderGateways(gateways) {
  fill(document.querySelector("#gateways tbody"), gateways.map((g) => el("tr", { "data-gateway": `${g.namespace}/${g.name}` },
    el("td", {}, `${g.namespace}/${g.name}`), el("td", {}, g.gateway_class), el("td", {}, g.addresses.join(", ") || "–"),
    el("td", { title: g.programmed_message }, yesNo(g.programmed), g.programmed === false ? ` ${g.programmed_reason}` : ""),
    el("td", {}, g.listeners.join(", ")))));
}

function renderRoutes(routes) {
  const rows = [];
  for (const r of routes) {
    r.rules.forEach((rule, i) => {
      rows.push(el("tr", { "data-route": `${r.namespace}/${r.name}`, "data-rule": i },
        el("td", {}, i === 0 ? `${r.namespace}/${r.name}` : ""), el("td", {}, i === 0 ? yesNo(r.accepted) : ""),
        el("td", {}, i === 0 ? yesNo(r.resolved_refs) : ""), el("td", {}, rule.matches.join("; ") || "(all)"),
        el("td", {}, ...rule.backends.map((b) => el("div", { class: "backend", "data-backend": b.name, "data-weight": b.weight },
          `${b.kind} ${b.name}: ${b.weight} (${pct(b.share)})`)))));
    });
  }
  fill(document.querySelector("#routes tbody"), rows);
}

function stat(label, value, cls) {
  return el("div", {}, el("div", { class: "label" }, label), el("div", { class: `value ${cls}` }, value));
}

function renderPools(pools) {
  const container = document.getElementById("pools");
  container.replaceChildren(...pools.map((p) => {
    const t = p.traffic || {};
    const key = `${p.namespace}/${p.name}`;
    const endpoints = el("table", { class: "endpoints" },
      el("thead", {}, el("tr", {}, ...["endpoint", "address", "ready", "requests/s", "errors/s", "waiting", "running", "KV cache", "prefix hits", "TTFT p50", "LoRA"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...p.endpoints.map((e) => el("tr", { "data-endpoint": e.name },
        el("td", {}, e.name), el("td", {}, `${e.address}:${e.port}`), el("td", {}, yesNo(e.ready && e.reachable)),
        el("td", { class: "num endpoint-rps", title: e.requests_source === "model server" ? "the model server's finished requests (all its traffic)" : null }, fmt(e.requests_per_s, 1)),
        el("td", { class: "num endpoint-eps" }, fmt(e.errors_per_s, 1)),
        el("td", { class: "num queue" }, fmt(e.queue, 0)), el("td", { class: "num running" }, fmt(e.running, 0)),
        el("td", { class: "num kv" }, pct(e.kv_cache)), el("td", { class: "num prefix" }, pct(e.prefix_cache_hit_rate)),
        el("td", { class: "num ttft" }, ms(e.ttft_p50_s)),
        el("td", {}, [...e.lora_running, ...e.lora_waiting.map((a) => a + " (waiting)")].join(", ") || "–")))));
    const objectives = [...p.objectives.map((o) => `${o.name} (priority ${o.priority ?? "–"})`),
      ...p.models.map((m) => `${m.model_name} (${m.criticality || "–"})`)];
    return el("div", { class: "pool", "data-pool": key },
      el("h3", {}, key, el("span", { class: "muted" }, `  ${p.generation} · EPP ${p.epp} · ${p.failure_mode} · accepted `), yesNo(p.accepted)),
      el("div", { class: "traffic" },
        stat("requests/s", fmt(t.requests_per_s), "rps"), stat("errors/s", fmt(t.errors_per_s), "eps"),
        stat("held in the EPP", fmt(t.held_in_epp, 0), "held"),
        stat("requests", fmt(t.requests, 0), "requests"),
        stat("latency p50/p90", `${ms(t.latency_p50_s)} / ${ms(t.latency_p90_s)}`, "latency"),
        stat("TTFT p50/p90", `${ms(t.ttft_p50_s)} / ${ms(t.ttft_p90_s)}`, "ttft"),
        stat("endpoints ready", `${p.endpoints.filter((e) => e.ready).length}/${p.endpoints.length}`, "ready")),
      objectives.length ? el("div", { class: "muted" }, "objectives: " + objectives.join(", ")) : "",
      p.epp_error ? el("div", { class: "no" }, "EPP metrics: " + p.epp_error) : "",
      endpoints);
  }));
}

// -- charts ---------------------------------------------------------------------------------------

function lineChart(target, series, scale = 1) {
  // series: {name: [[t, value|null], ...]}; t in ms since epoch
  const W = 440, H = 170, L = 42, R = 8, T = 8, B = 20;
  const names = Object.keys(series).sort();
  const points = names.flatMap((n) => series[n].filter((p) => p[1] !== null));
  const svg = document.createElementNS(SVGNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  add("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
  add("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B });
  const legend = el("div", { class: "legend" });
  if (!points.length) {
    add("text", { class: "tick", x: L + 10, y: H / 2 }, "no data yet");
    target.replaceChildren(svg, legend);
    return;
  }
  const t0 = Math.min(...points.map((p) => p[0])), t1 = Math.max(...points.map((p) => p[0]));
  const ymax = Math.max(...points.map((p) => p[1] * scale)) || 1;
  const x = (t) => L + ((t - t0) / Math.max(t1 - t0, 1)) * (W - L - R);
  const y = (v) => H - B - (v * scale / ymax) * (H - T - B);
  add("text", { class: "tick", x: 2, y: T + 8 }, fmt(ymax, ymax >= 10 ? 0 : 2));
  add("text", { class: "tick", x: 2, y: H - B }, "0");
  add("text", { class: "tick", x: L, y: H - 4 }, new Date(t0).toLocaleTimeString());
  add("text", { class: "tick", x: W - R - 50, y: H - 4 }, new Date(t1).toLocaleTimeString());
  names.forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    let d = "", pen = "M";
    for (const [t, v] of series[name]) {
      if (v === null) { pen = "M"; continue; }
      d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    }
    const path = add("path", { class: "series", d, stroke: color });
    path.setAttribute("data-series", name);
    legend.append(el("span", {}, el("span", { class: "swatch", style: `background:${color}` }), name));
  });
  target.replaceChildren(svg, legend);
}

function seriesOf(samples, section, field, combine) {
  const out = {};
  for (const s of samples) {
    const t = Date.parse(s.at);
    for (const [name, values] of Object.entries(s[section] || {})) {
      const v = combine ? combine(values) : values[field];
      (out[name] = out[name] || []).push([t, v === undefined ? null : v]);
    }
  }
  return out;
}

function renderCharts(samples) {
  lineChart(document.getElementById("chart-rps"), seriesOf(samples, "pools", "requests_per_s"));
  lineChart(document.getElementById("chart-errors"), seriesOf(samples, "pools", "errors_per_s"));
  lineChart(document.getElementById("chart-ttft"), seriesOf(samples, "pools", "ttft_p50_s"), 1000);
  lineChart(document.getElementById("chart-endpoint-rps"), seriesOf(samples, "endpoints", "requests_per_s"));
  lineChart(document.getElementById("chart-endpoint-errors"), seriesOf(samples, "endpoints", "errors_per_s"));
  lineChart(document.getElementById("chart-endpoint-ttft"), seriesOf(samples, "endpoints", "ttft_p50_s"), 1000);
  lineChart(document.getElementById("chart-endpoint-load"), seriesOf(samples, "endpoints", null,
    (v) => (v.running === null && v.queue === null ? null : (v.running || 0) + (v.queue || 0))));
  const weights = {};
  for (const s of samples) {
    for (const [name, w] of Object.entries(s.weights || {})) (weights[name] = weights[name] || []).push([Date.parse(s.at), w]);
  }
  lineChart(document.getElementById("chart-weights"), weights);
}

// -- migration ------------------------------------------------------------------------------------

function renderMigration(m) {
  const section = document.getElementById("migration");
  if (!m || (!m.steps.length && m.ga_weight === null)) { section.hidden = true; return; }
  section.hidden = false;
  document.getElementById("migration-route").textContent = m.route || "";
  document.getElementById("migration-step").textContent = m.current_step || "–";
  const decision = document.getElementById("migration-decision");
  decision.textContent = m.decision || (m.active ? "running" : "–");
  decision.className = "big decision-" + String(m.decision || "none").replace(" ", "-");
  document.getElementById("migration-decision-detail").textContent = m.decision_detail || "";
  const preview = m.preview_weight ?? 100, ga = m.ga_weight ?? 0;
  const total = preview + ga || 1;
  document.getElementById("split-preview").style.width = `${(100 * preview) / total}%`;
  document.getElementById("split-ga").style.width = `${(100 * ga) / total}%`;
  document.getElementById("preview-weight").textContent = m.preview_weight ?? "–";
  document.getElementById("ga-weight").textContent = m.ga_weight ?? "–";
  document.getElementById("gates-weight").textContent = m.gates_at_weight === null ? "" : `at ${m.gates_at_weight}% GA`;
  fill(document.querySelector("#gates tbody"), m.gates.map((g) => el("tr", { "data-gate": g.gate },
    el("td", {}, g.gate), el("td", { class: "verdict-" + g.verdict }, g.verdict), el("td", {}, g.detail))));
  document.getElementById("migration-steps").replaceChildren(...m.steps.map((s) => el("li", { class: s.status, "data-step": s.step },
    `${s.step}: `, el("span", { class: "verdict-" + s.status }, s.status), s.detail ? ` — ${s.detail}` : "")));
}

// -- polling --------------------------------------------------------------------------------------

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  return { ok: response.ok, status: response.status, body };
}

async function poll() {
  const badge = document.getElementById("connection");
  try {
    const [status, series, migration] = await Promise.all([getJSON("api/status"), getJSON("api/series"), getJSON("api/migration")]);
    renderMigration(migration.body);
    if (status.ok) {
      const s = status.body;
      document.getElementById("source").textContent = s.source;
      document.getElementById("taken-at").textContent = `sampled ${s.taken_at} (window ${s.sample_interval_s}s)`;
      if (s.sample_interval_s > 0 && !(POLL_PARAM > 0)) pollMs = Math.max(100, Math.min(POLL_MS, s.sample_interval_s * 1000));
      renderGateways(s.gateways);
      renderRoutes(s.routes);
      renderPools(s.pools);
      const errors = [...s.errors, ...(s.sampler_error ? [s.sampler_error] : [])];
      document.getElementById("status-errors").hidden = !errors.length;
      document.getElementById("errors").replaceChildren(...errors.map((e) => el("li", {}, e)));
    } else {
      document.getElementById("source").textContent = status.body.error || `status: HTTP ${status.status}`;
    }
    for (const section of document.querySelectorAll(".status-only")) section.hidden = status.status === 404;
    renderCharts(series.body.samples);
    badge.textContent = "live";
    badge.className = "badge live";
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (err) {
    badge.textContent = "disconnected";
    badge.className = "badge down";
  }
  setTimeout(poll, pollMs);
}

poll();
