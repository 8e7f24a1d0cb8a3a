// segstream dashboard: polls the worker's /api/* endpoints (same origin only) and draws
// them with the vendored Chart.js. The token comes from ?token= or the form, is kept in
// sessionStorage for this tab, and is sent as the bearer token.
"use strict";

(function () {
  const STATUS_EVERY_MS = 2000;
  const SIZES_EVERY_MS = 15000;
  const FLOWS_EVERY_MS = 10000;
  const ACTIONS_EVERY_MS = 30000;
  const HISTORY = 150; // status polls kept for the rolling charts (5 minutes)
  const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
                  "#dd4477", "#66aa00", "#b82e2e", "#316395", "#994499", "#22aa99"];

  const state = {
    charts: {},
    ready: false,
    errors: [],
    polls: 0,
    history: [], // {t, label, rates: {...}, lag: {p: n}, age: {p: s}}
    previous: null,
    sizes: null,
    flows: null,
    actions: null, // the last /api/actions answer
  };
  window.segstream = state;

  // --- token -----------------------------------------------------------------------------
  const url = new URL(window.location.href);
  let token = url.searchParams.get("token") || sessionStorage.getItem("segstream.token") || "";
  if (url.searchParams.has("token")) {
    sessionStorage.setItem("segstream.token", token);
    url.searchParams.delete("token"); // keep it out of the address bar and history
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  class Unauthorized extends Error {}

  async function api(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) throw new Unauthorized(path);
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  function askToken(message) {
    const form = document.getElementById("login");
    form.hidden = false;
    document.getElementById("login-error").textContent = message || "";
    document.getElementById("main").hidden = true;
  }

  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem("segstream.token", token);
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    start();
  });

  // --- helpers ---------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const fmt = (n, digits = 0) =>
    n === null || n === undefined || Number.isNaN(n) ? "–" :
      Number(n).toLocaleString("en-US", { maximumFractionDigits: digits });
  const clockLabel = (seconds) => new Date(seconds * 1000).toISOString().slice(11, 19);
  const dateLabel = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return seconds.toFixed(2) + " s";
    if (seconds < 120) return seconds.toFixed(1) + " s";
    if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function lineChart(id, yTitle) {
    const chart = new window.Chart($(id), {
      type: "line",
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
        scales: {
          x: { ticks: { maxTicksLimit: 8, autoSkip: true } },
          y: { beginAtZero: true, title: { display: true, text: yTitle } },
        },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      },
    });
    state.charts[id] = chart;
    return chart;
  }

  function setSeries(chart, labels, series) {
    // series: [{label, data}] -> datasets, keeping colours stable by position
    chart.data.labels = labels;
    chart.data.datasets = series.map((s, i) => ({
      label: s.label,
      data: s.data,
      borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length],
    }));
    chart.update();
  }

  // --- status: counters, lag, freshness --------------------------------------------------
  function rates(previous, current) {
    const dt = current.at - previous.at;
    if (dt <= 0) return null;
    const out = {};
    const types = new Set([...Object.keys(previous.totals.events), ...Object.keys(current.totals.events)]);
    for (const type of types) {
      out[type] = ((current.totals.events[type] || 0) - (previous.totals.events[type] || 0)) / dt;
    }
    out["dead letters"] = (current.totals.deadletters - previous.totals.deadletters) / dt;
    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    out["segment changes"] = (sum(current.totals.changes) - sum(previous.totals.changes)) / dt;
    out.all = (current.totals.messages - previous.totals.messages) / dt;
    return out;
  }

  function renderStatus(status) {
    $("worker").textContent = "worker " + status.worker;
    $("updated").textContent = "updated " + clockLabel(status.at) + " UTC";
    const parts = status.partitions;
    const lagKnown = parts.filter((p) => p.lag !== null);
    const totalLag = lagKnown.reduce((a, p) => a + p.lag, 0);
    const ages = parts.map((p) => p.event_age_s).filter((a) => a !== null);
    const stalled = parts.filter((p) => p.stalled);
    const ahead = parts.filter((p) => p.clock_fault);
    $("k-lag").textContent = lagKnown.length ? fmt(totalLag) : "–";
    $("k-fresh").textContent = ages.length ? duration(Math.max(...ages)) : "–";
    $("k-timers").textContent = fmt(status.totals.timers_fired);
    $("k-redis").textContent = fmt(status.totals.redis_errors);
    const pill = $("health");
    if (ahead.length) {
      pill.textContent = "clock ahead: partition " + ahead.map((p) => p.partition).join(", ");
      pill.className = "pill bad";
    } else if (stalled.length) {
      pill.textContent = "stalled: partition " + stalled.map((p) => p.partition).join(", ");
      pill.className = "pill bad";
    } else if (!parts.length) {
      pill.textContent = "no partitions assigned";
      pill.className = "pill warn";
    } else {
      pill.textContent = "running";
      pill.className = "pill ok";
    }

    const point = { t: status.at, label: clockLabel(status.at), lag: {}, age: {} };
    for (const p of parts) {
      point.lag[p.partition] = p.lag;
      point.age[p.partition] = p.event_age_s;
    }
    if (state.previous) {
      point.rates = rates(state.previous, status);
    }
    state.previous = status;
    if (point.rates) {
      $("k-rate").textContent = fmt(point.rates.all, 1);
      $("k-dlq").textContent = fmt(point.rates["dead letters"], 2);
      $("k-changes").textContent = fmt(point.rates["segment changes"], 1);
    }
    state.history.push(point);
    if (state.history.length > HISTORY) state.history.shift();

    const labels = state.history.map((h) => h.label);
    const withRates = state.history.map((h) => h.rates || null);
    const rateNames = [...new Set(withRates.flatMap((r) => (r ? Object.keys(r) : [])))]
      .filter((n) => n !== "all").sort();
    setSeries(state.charts["c-throughput"], labels, rateNames.map((name) => ({
      label: name,
      data: withRates.map((r) => (r ? Math.max(r[name] || 0, 0) : null)),
    })));
    const partitionIds = [...new Set(state.history.flatMap((h) => Object.keys(h.lag)))].sort((a, b) => a - b);
    setSeries(state.charts["c-lag"], labels, partitionIds.map((p) => ({
      label: "partition " + p,
      data: state.history.map((h) => (h.lag[p] === undefined ? null : h.lag[p])),
    })));
    setSeries(state.charts["c-fresh"], labels, partitionIds.map((p) => ({
      label: "partition " + p,
      data: state.history.map((h) => (h.age[p] === undefined ? null : h.age[p])),
    })));

    const body = $("partitions").tBodies[0];
    body.replaceChildren();
    for (const p of parts) {
      const row = document.createElement("tr");
      cell(row, String(p.partition));
      cell(row, p.lag === null ? "–" : fmt(p.lag));
      cell(row, duration(p.event_age_s));
      cell(row, p.clock === null ? "–" : dateLabel(p.clock));
      cell(row, duration(p.progress_age_s) + " ago");
      if (p.clock_fault) cell(row, "clock ahead " + duration(p.clock_ahead_s), "fault");
      else if (p.stalled) cell(row, "stalled", "stalled");
      else cell(row, p.lag ? "catching up" : "up to date", "ok");
      body.appendChild(row);
    }
  }

  // --- segment sizes ---------------------------------------------------------------------
  function fillSelect(select, names) {
    const current = select.value;
    const have = [...select.options].map((o) => o.value);
    if (have.join("\u001f") === names.join("\u001f")) return;
    select.replaceChildren(...names.map((n) => {
      const option = document.createElement("option");
      option.value = n;
      option.textContent = n;
      return option;
    }));
    if (names.includes(current)) select.value = current;
    else if (names.includes("journey")) select.value = "journey";
  }

  function renderSizes() {
    const sizes = state.sizes;
    if (!sizes) return;
    const dims = Object.keys(sizes.dimensions).sort();
    fillSelect($("sizes-dim"), dims);
    const dim = $("sizes-dim").value;
    const segments = sizes.dimensions[dim] || {};
    const names = Object.keys(segments).sort((a, b) => {
      const last = (n) => segments[n][segments[n].length - 1] || 0;
      return last(b) - last(a);
    }).slice(0, 8); // the largest segments now
    const span = sizes.at.length ? sizes.at[sizes.at.length - 1] - sizes.at[0] : 0;
    setSeries(state.charts["c-sizes"], sizes.at.map(span < 86400 ? clockLabel : dateLabel),
      names.map((n) => ({ label: n, data: segments[n] })));
  }

  // --- flows -----------------------------------------------------------------------------
  function renderFlows() {
    const flows = state.flows;
    if (!flows) return;
    const dims = Object.keys(flows.flows).sort();
    fillSelect($("flows-dim"), dims);
    const rows = flows.flows[$("flows-dim").value] || [];
    const table = $("flows");
    table.replaceChildren();
    const body = document.createElement("tbody");
    if (!rows.length) {
      const row = document.createElement("tr");
      cell(row, "no flows in this window", "muted");
      body.appendChild(row);
      table.appendChild(body);
      return;
    }
    const from = [...new Set(rows.map((r) => r.from === null ? "new" : r.from))].sort();
    const to = [...new Set(rows.map((r) => r.to))].sort();
    const counts = new Map(rows.map((r) => [(r.from === null ? "new" : r.from) + "\u001f" + r.to, r.count]));
    const max = Math.max(...rows.map((r) => r.count));
    const head = document.createElement("thead");
    const hr = document.createElement("tr");
    const corner = document.createElement("th");
    corner.textContent = "from \\ to";
    hr.appendChild(corner);
    for (const t of to) {
      const th = document.createElement("th");
      th.textContent = t;
      hr.appendChild(th);
    }
    head.appendChild(hr);
    table.appendChild(head);
    for (const f of from) {
      const row = document.createElement("tr");
      const th = document.createElement("th");
      th.className = "col";
      th.textContent = f;
      row.appendChild(th);
      for (const t of to) {
        const n = counts.get(f + "\u001f" + t) || 0;
        const td = cell(row, n ? fmt(n) : "");
        if (n) td.style.backgroundColor = "rgba(51, 102, 204, " + (0.12 + 0.6 * n / max).toFixed(2) + ")";
      }
      body.appendChild(row);
    }
    table.appendChild(body);
  }

  // --- actions ---------------------------------------------------------------------------
  // /api/actions gives numbers; they are formatted here.
  const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(2) + "%");
  const signed = (x) => (x >= 0 ? "+" : "") + x.toFixed(2);
  const money = (x) => (x === null || x === undefined ? "–" :
    x.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));

  function interval(i, scale, unit) {
    return signed(i.estimate * scale) + unit + " [" + signed(i.low * scale) + ", " +
      signed(i.high * scale) + "]";
  }

  function tooFew(r) {
    return "too few (" + r.treated.customers + " treated, " + r.control.customers +
      " control; " + Math.max(r.min_group, 1) + " each needed)";
  }

  function renderActions(doc) {
    state.actions = doc;
    const table = $("actions");
    table.replaceChildren();
    const rows = doc.rows || [];
    const body = document.createElement("tbody");
    if (!rows.length) {
      const row = document.createElement("tr");
      cell(row, doc.since || doc.until ? "no decisions in this window" : "no retention actions yet", "muted");
      body.appendChild(row);
      table.appendChild(body);
      return;
    }
    const level = Math.round((rows[0].conversion_diff || rows[0].revenue_diff || { level: doc.level || 0.95 }).level * 100);
    const cur = doc.currency;
    const columns = ["action", "treated", "control", "conv treated", "conv control",
                     "Δ conv (" + level + "% CI)", "revenue/customer treated (" + cur + ")",
                     "revenue/customer control (" + cur + ")",
                     "Δ revenue/customer (" + cur + ", " + level + "% CI)", "suppressed"];
    const head = document.createElement("thead");
    const hr = document.createElement("tr");
    for (const c of columns) {
      const th = document.createElement("th");
      th.textContent = c;
      hr.appendChild(th);
    }
    head.appendChild(hr);
    table.appendChild(head);
    for (const r of rows) {
      const row = document.createElement("tr");
      const few = r.status === "too_few";
      let revenue = "–";
      if (!few) revenue = r.revenue_diff ? interval(r.revenue_diff, 1, "") : "no variance (all amounts equal)";
      cell(row, r.action);
      cell(row, fmt(r.treated.customers));
      cell(row, fmt(r.control.customers));
      cell(row, pct(r.treated.conversion_rate));
      cell(row, pct(r.control.conversion_rate));
      cell(row, few ? tooFew(r) : interval(r.conversion_diff, 100, " pp"), few ? "muted" : "");
      cell(row, money(r.treated.revenue_per_customer));
      cell(row, money(r.control.revenue_per_customer));
      cell(row, revenue, few || !r.revenue_diff ? "muted" : "");
      cell(row, Object.entries(r.suppressed).map(([k, v]) => k + "=" + v).join(" ") || "–");
      body.appendChild(row);
    }
    table.appendChild(body);
  }

  // --- polling ---------------------------------------------------------------------------
  const timers = [];

  function every(ms, task) {
    const run = async () => {
      try {
        await task();
      } catch (error) {
        if (error instanceof Unauthorized) {
          timers.forEach(clearInterval);
          timers.length = 0;
          askToken(token ? "That token was refused." : "");
          return;
        }
        state.errors.push(String(error));
        $("health").textContent = "cannot reach the worker";
        $("health").className = "pill bad";
      }
    };
    run();
    timers.push(setInterval(run, ms));
  }

  async function pollStatus() {
    renderStatus(await api("/api/status"));
    state.polls += 1;
    state.ready = state.polls >= 2 && state.sizes !== null && state.flows !== null;
  }

  async function pollSizes() {
    state.sizes = await api("/api/sizes?count=1440");
    renderSizes();
  }

  async function pollFlows() {
    state.flows = await api("/api/flows?window=" + encodeURIComponent($("flows-window").value));
    renderFlows();
  }

  async function pollActions() {
    const query = new URLSearchParams();
    if ($("actions-since").value) query.set("since", $("actions-since").value);
    if ($("actions-until").value) query.set("until", $("actions-until").value);
    const q = query.toString();
    renderActions(await api("/api/actions" + (q ? "?" + q : "")));
  }

  function start() {
    every(STATUS_EVERY_MS, pollStatus);
    every(SIZES_EVERY_MS, pollSizes);
    every(FLOWS_EVERY_MS, pollFlows);
    every(ACTIONS_EVERY_MS, pollActions);
  }

  lineChart("c-throughput", "per second");
  lineChart("c-lag", "messages");
  lineChart("c-fresh", "seconds");
  lineChart("c-sizes", "customers");
  $("sizes-dim").addEventListener("change", renderSizes);
  $("flows-dim").addEventListener("change", renderFlows);
  $("flows-window").addEventListener("change", () => pollFlows().catch((e) => state.errors.push(String(e))));
  for (const id of ["actions-since", "actions-until"]) {
    $(id).addEventListener("change", () => pollActions().catch((e) => state.errors.push(String(e))));
  }
  start();
})();
