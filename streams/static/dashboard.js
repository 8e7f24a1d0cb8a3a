// segstream dashboard: polls the worker's /api/* endpoints (same origin only) and draws
// them with the vendored Chart.js. The token comes from ?token= or the form, is kept in
// sessionStorage for this tab, and is sent as the bearer token.
"use strict";

(function () {
  const STATUS_EVERY_MS = 2000;
  const SIZES_EVERY_MS = 5000; // one pipelined read of at most ~340 records
  const SEGMENTS_EVERY_MS = 15000;
  const FLOWS_EVERY_MS = 10000;
  const ACTIONS_EVERY_MS = 30000;
  const VALUE_EVERY_MS = 30000; // the worker recomputes the sample's figures once a minute
  const REPORT_EVERY_MS = 60000; // the worker reuses a report for a minute
  const DEADLETTERS_EVERY_MS = 15000; // the worker reads the topic at most every 10 s
  const VOCABULARY_EVERY_MS = 60000;
  const OPS_EVERY_MS = 30000;
  const HISTORY = 450; // status polls kept (15 minutes): the charts' tail after the stored history
  const TOP_FLOWS = 8; // segments per dimension shown in the flows table; the rest: "other"
  const TOP_SIZES = 8; // segments charted over time
  const TABLE_ROWS = 300; // rows of the segments table shown at most (search narrows them)
  // Window of the sizes chart -> one point per this many seconds (at most ~340 points).
  const SIZES_EVERY = { "15m": 5, "1h": 15, "24h": 300, "7d": 1800 };
  // Window of the throughput, lag and freshness charts -> seconds, and one point per this
  // many seconds of the stored history (the worker raises it to its recording interval).
  const OPS_WINDOW = { "5m": 300, "15m": 900, "1h": 3600, "24h": 86400 };
  const OPS_EVERY = { "5m": 5, "15m": 10, "1h": 30, "24h": 600 };
  // ... and read again after this many seconds (a day is every worker's 8,640 records a
  // day to sum: read rarely); the page's polls carry the charts on in between.
  const OPS_REREAD_S = { "5m": 30, "15m": 30, "1h": 60, "24h": 300 };
  const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
                  "#dd4477", "#66aa00", "#b82e2e", "#316395", "#994499", "#22aa99"];

  const state = {
    charts: {},
    ready: false,
    errors: [],
    polls: 0,
    history: [], // status polls: {t, rates: {...}, lag: {p: n}, age: {p: s}, totalLag, worstAge}
    ops: null, // the last /api/history answer (Redis: all workers, survives a reload)
    opsReadAt: 0, // when it was asked for (the page's clock, seconds)
    previous: null,
    sizes: null, // the last /api/sizes?since= answer (Redis: survives a reload)
    segments: null, // the last /segments answer (sizes now)
    vocabulary: { segments: {}, dimensions: {} }, // descriptions (/api/vocabulary)
    flows: null,
    flowsShown: null, // {dimension, segments, other} of the flows table drawn
    report: null, // the last /api/report answer (null: not loaded)
    deadletters: null, // the last /api/deadletters answer
    customer: null, // the last customer look-up
    members: null, // the member page shown
    rates: null, // the last per-second rates
    actions: null, // the last /api/actions answer
    value: null, // the last /api/value answer
    valueCharts: {}, // made when the first model arrives (their canvases are hidden before)
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
  const isoLabel = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "–");
  const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);

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

  function headRow(table, columns) {
    const head = document.createElement("thead");
    const hr = document.createElement("tr");
    for (const c of columns) {
      const th = document.createElement("th");
      th.textContent = c;
      hr.appendChild(th);
    }
    head.appendChild(hr);
    table.appendChild(head);
  }

  function emptyTable(table, text) {
    const body = document.createElement("tbody");
    const row = document.createElement("tr");
    cell(row, text, "muted");
    body.appendChild(row);
    table.replaceChildren(body);
  }

  // Descriptions of behaviour clusters and custom segments (from /api/vocabulary).
  function describe(dimension, segment) {
    const v = state.vocabulary;
    const own = (v.segments[dimension] || {})[segment];
    if (own) return own;
    const dim = v.dimensions[dimension];
    if (!dim) return "";
    const text = dim.description || dim.rule;
    return segment === "member" ? text : "not: " + text;
  }

  function named(dimension, segment, max = 48) {
    const d = describe(dimension, segment);
    if (!d) return segment;
    const text = segment + " (" + d + ")";
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  // --- a time axis: x values are epoch seconds; ticks at round steps, one label each -----
  const STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                   21600, 43200, 86400, 172800, 604800];

  function timeStep(span, ticks = 7) {
    return STEPS_S.find((s) => span / s <= ticks) || STEPS_S[STEPS_S.length - 1];
  }

  function timeLabel(seconds, step, span) {
    const iso = new Date(seconds * 1000).toISOString();
    if (step >= 86400) return iso.slice(0, 10);
    if (span > 86400) return iso.slice(5, 16).replace("T", " ");
    if (step >= 60) return iso.slice(11, 16);
    return iso.slice(11, 19);
  }

  function timeTicks(axis) {
    const { min, max } = axis;
    if (!Number.isFinite(min) || !Number.isFinite(max) || max <= min) return;
    const step = timeStep(max - min);
    const ticks = [];
    for (let t = Math.ceil(min / step) * step; t <= max; t += step) ticks.push({ value: t });
    axis.ticks = ticks;
    axis.$step = step;
  }

  function lineChart(id, yTitle, options = {}) {
    const chart = new window.Chart($(id), {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        elements: {
          point: { radius: 0 },
          line: { borderWidth: 2, tension: 0, cubicInterpolationMode: "default" },
        },
        scales: {
          x: {
            type: "linear",
            bounds: "data",
            afterBuildTicks: timeTicks,
            ticks: {
              autoSkip: false,
              maxRotation: 0,
              callback(value) {
                return timeLabel(value, this.$step || 1, this.max - this.min);
              },
            },
          },
          y: { beginAtZero: true, title: { display: true, text: yTitle } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? new Date(items[0].parsed.x * 1000).toISOString()
                .slice(0, 19).replace("T", " ") + " UTC" : ""),
            },
          },
        },
        ...options,
      },
    });
    state.charts[id] = chart;
    return chart;
  }

  function setTimeSeries(chart, series, stepped = false) {
    // series: [{label, points: [{x: epoch seconds, y}]}]; colours stable by position
    chart.data.datasets = series.map((s, i) => ({
      label: s.label,
      data: s.points,
      stepped,
      borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length],
    }));
    chart.update();
  }

  function setSeries(chart, labels, series) {
    // categorical charts (value panel): series: [{label, data}]
    chart.data.labels = labels;
    chart.data.datasets = series.map((s, i) => ({
      label: s.label,
      data: s.data,
      borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length],
    }));
    chart.update();
  }

  // --- status: rates, totals, lag, freshness, actions telemetry, config ------------------
  function counters(status) {
    const actions = Object.values(status.actions || {});
    return {
      events: sum(status.totals.events),
      byType: status.totals.events,
      deadletters: status.totals.deadletters,
      changes: sum(status.totals.changes),
      timers: status.totals.timers_fired,
      sent: actions.reduce((a, x) => a + (x.sent || 0), 0),
      failed: actions.reduce((a, x) => a + (x.failed || 0), 0),
    };
  }

  function rates(previous, current) {
    // per second, from the counters' deltas; a restarted worker (counters fell) gives none
    const dt = current.at - previous.at;
    if (dt <= 0 || current.started !== previous.started) return null;
    const a = counters(previous);
    const b = counters(current);
    const out = { byType: {} };
    for (const k of ["events", "deadletters", "changes", "timers", "sent", "failed"]) {
      out[k] = Math.max(b[k] - a[k], 0) / dt;
    }
    for (const type of new Set([...Object.keys(a.byType), ...Object.keys(b.byType)])) {
      out.byType[type] = Math.max((b.byType[type] || 0) - (a.byType[type] || 0), 0) / dt;
    }
    return out;
  }

  function renderStatus(status) {
    $("worker").textContent = "worker " + status.worker;
    $("updated").textContent = "updated " + clockLabel(status.at) + " UTC";
    $("totals-since").textContent = "since the worker started, " + dateLabel(status.started) + " UTC";
    const parts = status.partitions;
    const lagKnown = parts.filter((p) => p.lag !== null);
    const totalLag = lagKnown.reduce((a, p) => a + p.lag, 0);
    const ages = parts.map((p) => p.event_age_s).filter((a) => a !== null);
    const stalled = parts.filter((p) => p.stalled);
    const ahead = parts.filter((p) => p.clock_fault);
    $("k-lag").textContent = lagKnown.length ? fmt(totalLag) : "–";
    $("k-fresh").textContent = ages.length ? duration(Math.max(...ages)) : "–";
    const c = counters(status);
    $("t-messages").textContent = fmt(status.totals.messages);
    $("t-deadletters").textContent = fmt(c.deadletters);
    $("t-changes").textContent = fmt(c.changes);
    $("t-timers").textContent = fmt(c.timers);
    $("t-sent").textContent = fmt(c.sent);
    $("t-failed").textContent = fmt(c.failed);
    $("k-redis").textContent = fmt(status.totals.redis_errors);
    const failing = Object.entries(status.config || {}).filter(([, f]) => f.failing);
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
    } else if (failing.length) {
      pill.textContent = "config reload failing: " + failing.map(([name]) => name).join(", ");
      pill.className = "pill bad";
    } else {
      pill.textContent = "running";
      pill.className = "pill ok";
    }

    const point = {
      t: status.at,
      lag: {},
      age: {},
      totalLag: lagKnown.length ? totalLag : null,
      worstAge: ages.length ? Math.max(...ages) : null,
    };
    for (const p of parts) {
      point.lag[p.partition] = p.lag;
      point.age[p.partition] = p.event_age_s;
    }
    if (state.previous) point.rates = rates(state.previous, status);
    state.previous = status;
    if (point.rates) {
      state.rates = point.rates;
      $("k-rate").textContent = fmt(point.rates.events, 1);
      $("k-dlq").textContent = fmt(point.rates.deadletters, 2);
      $("k-changes").textContent = fmt(point.rates.changes, 1);
      $("k-timers").textContent = fmt(point.rates.timers, 1);
      $("k-sent").textContent = fmt(point.rates.sent, 2);
    }
    state.history.push(point);
    if (state.history.length > HISTORY) state.history.shift();
    renderOps();

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
    renderTelemetry(status.actions || {});
    renderConfig(status.config || {});
  }

  // Throughput, lag and freshness: the stored history (/api/history: every worker's
  // records, summed per bucket), then this page's polls after its last point.
  function renderOps() {
    const ops = state.ops;
    const now = state.previous ? state.previous.at : Date.now() / 1000;
    const from = now - OPS_WINDOW[$("ops-window").value];
    const stored = ops ? ops.at.map((t, i) => i).filter((i) => ops.at[i] >= from) : [];
    const after = ops && ops.at.length ? ops.at[ops.at.length - 1] : -Infinity;
    const live = state.history.filter((h) => h.t > after && h.t >= from);
    const withRates = live.filter((h) => h.rates);
    const types = [...new Set([...Object.keys(ops ? ops.events : {}),
      ...withRates.flatMap((h) => Object.keys(h.rates.byType))])].sort();
    const count = (name) => ({
      stored: (i) => ops.rates[name][i],
      live: (r) => r[name],
    });
    const rateSeries = [
      ...types.map((type) => ({
        label: type + " events",
        stored: (i) => (ops.events[type] || [])[i] || 0,
        live: (r) => r.byType[type] || 0,
      })),
      { label: "dead letters", ...count("deadletters") },
      { label: "segment changes", ...count("changes") },
      { label: "timers fired", ...count("timers") },
      { label: "actions sent", ...count("sent") },
    ];
    setTimeSeries(state.charts["c-throughput"], rateSeries.map((s) => ({
      label: s.label,
      points: [...stored.map((i) => ({ x: ops.at[i], y: s.stored(i) })),
               ...withRates.map((h) => ({ x: h.t, y: s.live(h.rates) }))],
    })));
    const gauge = (values, key) => [
      ...stored.filter((i) => values[i] !== null).map((i) => ({ x: ops.at[i], y: values[i] })),
      ...live.filter((h) => h[key] !== null).map((h) => ({ x: h.t, y: h[key] })),
    ];
    setTimeSeries(state.charts["c-lag"], [
      { label: "all partitions", points: gauge(ops ? ops.lag : [], "totalLag") },
    ]);
    setTimeSeries(state.charts["c-fresh"], [
      { label: "stalest partition", points: gauge(ops ? ops.freshness : [], "worstAge") },
    ]);
  }

  function renderTelemetry(actions) {
    const table = $("telemetry");
    const ids = Object.keys(actions).sort();
    if (!ids.length) {
      emptyTable(table, "no action decided or sent yet");
      return;
    }
    const outcomes = [...new Set(ids.flatMap((a) => Object.keys(actions[a].decided)))].sort();
    table.replaceChildren();
    headRow(table, ["action", "channel", ...outcomes.map((o) => "decided: " + o), "sent",
                    "suppressed by reason", "failed"]);
    const body = document.createElement("tbody");
    for (const id of ids) {
      const a = actions[id];
      const row = document.createElement("tr");
      cell(row, id);
      cell(row, a.channel, "text");
      for (const o of outcomes) cell(row, fmt(a.decided[o] || 0));
      cell(row, fmt(a.sent));
      cell(row, Object.entries(a.suppressed).sort((x, y) => y[1] - x[1])
        .map(([k, v]) => k + " " + fmt(v)).join(", ") || "–", "text");
      cell(row, fmt(a.failed), a.failed ? "fault" : "");
      body.appendChild(row);
    }
    table.appendChild(body);
  }

  function renderConfig(config) {
    const files = Object.keys(config).sort();
    const table = $("config");
    const alert = $("config-alert");
    const failing = files.filter((f) => config[f].failing);
    alert.hidden = !failing.length;
    alert.textContent = failing.map((f) => "The " + f + " file (" + config[f].path +
      ") failed to reload at " + dateLabel(config[f].last_error_at) + " UTC: " +
      config[f].last_error + ". The version loaded " +
      (config[f].loaded_at ? dateLabel(config[f].loaded_at) + " UTC" : "before") +
      " stays in force.").join(" ");
    if (!files.length) {
      emptyTable(table, "no segments or actions file configured");
      return;
    }
    table.replaceChildren();
    headRow(table, ["file", "path", "version", "last loaded", "reload errors", "last error", "state"]);
    const body = document.createElement("tbody");
    for (const f of files) {
      const c = config[f];
      const row = document.createElement("tr");
      cell(row, f);
      cell(row, c.path, "text");
      cell(row, c.version === null ? "–" : c.version);
      cell(row, c.loaded_at ? dateLabel(c.loaded_at) + " UTC" : "never");
      cell(row, fmt(c.errors));
      cell(row, c.last_error ? c.last_error + " (" + dateLabel(c.last_error_at) + " UTC)" : "–", "text");
      cell(row, c.failing ? "failing" : "ok", c.failing ? "fault" : "ok");
      body.appendChild(row);
    }
    table.appendChild(body);
  }

  // --- segment sizes over time (/api/sizes?since=: wall-clock records in Redis) ----------
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

  function dimensionsNow() {
    const dims = new Set((state.segments || []).map((s) => s.dimension));
    return [...dims].sort();
  }

  function renderSizes() {
    const sizes = state.sizes;
    if (!sizes) return;
    const segments = sizes.dimensions[sizes.dimension] || {};
    const last = (n) => segments[n][segments[n].length - 1] || 0;
    const names = Object.keys(segments).sort((a, b) => last(b) - last(a) || (a < b ? -1 : 1))
      .slice(0, TOP_SIZES);
    // counts: drawn as steps (a size holds until the next record), never smoothed
    setTimeSeries(state.charts["c-sizes"], names.map((n) => ({
      label: named(sizes.dimension, n, 40),
      points: sizes.at.map((t, i) => ({ x: t, y: segments[n][i] })),
    })), "after");
  }

  // --- segments now: sizes, shares, descriptions, members, CSV ---------------------------
  function renderSegments() {
    const rows = state.segments;
    if (!rows) return;
    const totals = {};
    for (const r of rows) totals[r.dimension] = (totals[r.dimension] || 0) + r.size;
    const q = $("sizes-search").value.trim().toLowerCase();
    const found = rows.map((r) => ({ ...r, description: describe(r.dimension, r.segment) }))
      .filter((r) => !q || (r.dimension + " " + r.segment + " " + r.description).toLowerCase().includes(q))
      .sort((a, b) => (a.dimension < b.dimension ? -1 : a.dimension > b.dimension ? 1 : b.size - a.size));
    $("sizes-count").textContent = fmt(found.length) + " of " + fmt(rows.length) + " segments" +
      (found.length > TABLE_ROWS ? "; the first " + TABLE_ROWS + " shown" : "");
    const table = $("sizes-table");
    table.replaceChildren();
    headRow(table, ["dimension", "segment", "size", "share of dimension", "description", "members", "export"]);
    const body = document.createElement("tbody");
    for (const r of found.slice(0, TABLE_ROWS)) {
      const row = document.createElement("tr");
      row.dataset.dimension = r.dimension;
      row.dataset.segment = r.segment;
      cell(row, r.dimension);
      cell(row, r.segment, "text");
      cell(row, fmt(r.size));
      cell(row, totals[r.dimension] ? (100 * r.size / totals[r.dimension]).toFixed(1) + "%" : "–");
      cell(row, r.description || "", "desc");
      const show = document.createElement("button");
      show.className = "link members-link";
      show.textContent = "show";
      show.addEventListener("click", () => showMembers(r.dimension, r.segment)
        .catch((e) => state.errors.push(String(e))));
      cell(row, "").appendChild(show);
      const csv = document.createElement("a");
      csv.className = "csv-link";
      csv.href = membersPath(r.dimension, r.segment) + ".csv";
      csv.textContent = "CSV";
      csv.addEventListener("click", (event) => {
        event.preventDefault();
        download(csv.href, r.dimension + "-" + r.segment + ".csv").catch((e) => state.errors.push(String(e)));
      });
      cell(row, "").appendChild(csv);
      body.appendChild(row);
    }
    table.appendChild(body);
  }

  const membersPath = (dimension, segment) => "/segments/" + encodeURIComponent(dimension) + "/" +
    segment.split("/").map(encodeURIComponent).join("/") + "/members";

  async function showMembers(dimension, segment) {
    const page = await api(membersPath(dimension, segment) + "?count=100");
    state.members = page;
    $("members").hidden = false;
    const d = describe(dimension, segment);
    $("members-title").textContent = "Members of " + dimension + " / " + segment + (d ? " (" + d + ")" : "");
    $("members-note").textContent = "First page: " + page.members.length + " members" +
      (page.next_cursor === null ? " (all of them)." : "; the CSV export holds every member.");
    $("members-list").replaceChildren(...page.members.map((m) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.className = "link";
      b.textContent = m;
      b.addEventListener("click", () => lookUp(m).catch((e) => state.errors.push(String(e))));
      li.appendChild(b);
      return li;
    }));
  }

  async function download(path, name) {
    // the bearer token goes in a header, so the file is fetched and saved from memory
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name.replace(/[/:]/g, "_");
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // --- customer look-up -----------------------------------------------------------------
  function kvTable(title, pairs) {
    const table = document.createElement("table");
    const caption = document.createElement("caption");
    caption.textContent = title;
    table.appendChild(caption);
    const body = document.createElement("tbody");
    for (const [k, v] of pairs) {
      const row = document.createElement("tr");
      const th = document.createElement("th");
      th.className = "col";
      th.textContent = k;
      row.appendChild(th);
      cell(row, v, "text");
      body.appendChild(row);
    }
    table.appendChild(body);
    return table;
  }

  function rowsTable(title, columns, rows, empty) {
    const table = document.createElement("table");
    const caption = document.createElement("caption");
    caption.textContent = title;
    table.appendChild(caption);
    if (!rows.length) {
      const body = document.createElement("tbody");
      const row = document.createElement("tr");
      cell(row, empty, "muted");
      body.appendChild(row);
      table.appendChild(body);
      return table;
    }
    headRow(table, columns);
    const body = document.createElement("tbody");
    for (const r of rows) {
      const row = document.createElement("tr");
      r.forEach((v, i) => cell(row, v, i ? "text" : ""));
      body.appendChild(row);
    }
    table.appendChild(body);
    return table;
  }

  async function lookUp(id) {
    $("lookup-id").value = id;
    const out = $("customer");
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch("/customers/" + encodeURIComponent(id), { headers, cache: "no-store" });
    if (response.status === 401) throw new Unauthorized("/customers");
    if (response.status === 404) {
      state.customer = { customer_id: id, missing: true };
      out.className = "muted";
      out.textContent = "No state for customer " + id + ".";
      return;
    }
    if (!response.ok) throw new Error("/customers: HTTP " + response.status);
    const c = await response.json();
    state.customer = c;
    out.className = "";
    const s = c.state;
    const activity = c.activity || { entries: [], actions: { last: [], pending: [], assigned: [] } };
    const entered = Object.fromEntries(activity.entries.map((e) => [e.dimension, e]));
    const segs = Object.keys(c.segments).sort().map((d) => [d, c.segments[d],
      describe(d, c.segments[d]) || "–", entered[d] ? isoLabel(entered[d].at) : "–"]);
    const p = c.predictions;
    const left = document.createElement("div");
    left.append(
      rowsTable("Segments of " + c.customer_id, ["dimension", "segment", "description", "entered (event time)"],
        segs, "in no segment"),
      rowsTable("Latest segment entries", ["dimension", "segment", "entered", "changes so far"],
        activity.entries.map((e) => [e.dimension, e.segment, isoLabel(e.at), fmt(e.changes)]), "none"),
    );
    const right = document.createElement("div");
    right.append(
      kvTable("State", [
        ["orders", fmt(s.orders)], ["revenue", money(s.revenue)], ["refunds", fmt(s.refunds)],
        ["events", fmt(s.events)], ["cart", fmt(s.cart_items) + " items, " + money(s.cart_value)],
        ["first seen", isoLabel(s.first_seen)], ["last seen", isoLabel(s.last_seen)],
        ["last order", isoLabel(s.last_order_at)],
      ]),
      p ? kvTable("Predictions (value model v" + p.model_version + ")", [
        ["P(alive)", fmt(p.p_alive, 3)], ["expected orders", fmt(p.expected_orders, 2)],
        ["expected order value", money(p.expected_order_value)], ["CLV", money(p.clv)],
      ]) : kvTable("Predictions", [["value model", "no prediction (no model yet, or not a buyer)"]]),
      rowsTable("Actions", ["action", "what", "when"], [
        ...activity.actions.last.map((a) => [a.action, "last sent or held out", isoLabel(a.at)]),
        ...activity.actions.pending.map((a) => [a.action, "scheduled", isoLabel(a.due_at)]),
        ...activity.actions.assigned.map((a) => [a.action, a.group + " (" + a.experiment + ")", isoLabel(a.at)]),
      ], "no action for this customer"),
    );
    const cols = document.createElement("div");
    cols.className = "cols";
    cols.append(left, right);
    out.replaceChildren(cols);
  }

  // --- flows: the top segments by volume, the rest grouped ------------------------------
  function topFlows(rows, n) {
    const volume = new Map();
    const add = (s, k) => volume.set(s, (volume.get(s) || 0) + k);
    for (const r of rows) {
      if (r.from !== null) add(r.from, r.count);
      add(r.to, r.count);
    }
    const ranked = [...volume].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const top = new Set(ranked.slice(0, n).map(([s]) => s));
    const name = (s) => (s === null ? "new" : top.has(s) ? s : "other");
    const grouped = new Map();
    for (const r of rows) {
      const key = name(r.from) + "\u001f" + name(r.to);
      grouped.set(key, (grouped.get(key) || 0) + r.count);
    }
    return { top: [...top], other: ranked.length - top.size, counts: grouped };
  }

  function renderFlows() {
    const flows = state.flows;
    if (!flows) return;
    const dims = Object.keys(flows.flows).sort();
    fillSelect($("flows-dim"), dims);
    const dim = $("flows-dim").value;
    const rows = flows.flows[dim] || [];
    const table = $("flows");
    if (!rows.length) {
      emptyTable(table, "no flows in this window");
      state.flowsShown = { dimension: dim, segments: [], other: 0 };
      $("flows-legend").textContent = "";
      return;
    }
    const { top, other, counts } = topFlows(rows, TOP_FLOWS);
    state.flowsShown = { dimension: dim, segments: top, other };
    const order = (list) => [...list].sort();
    const hasOther = other > 0;
    const hasNew = rows.some((r) => r.from === null);
    const from = [...(hasNew ? ["new"] : []), ...order(top), ...(hasOther ? ["other"] : [])];
    const to = [...order(top), ...(hasOther ? ["other"] : [])];
    const max = Math.max(...counts.values());
    table.replaceChildren();
    const head = document.createElement("thead");
    const hr = document.createElement("tr");
    const corner = document.createElement("th");
    corner.textContent = "from \\ to";
    hr.appendChild(corner);
    for (const t of to) {
      const th = document.createElement("th");
      th.textContent = t;
      th.title = t === "other" ? other + " smaller segments" : describe(dim, t) || t;
      hr.appendChild(th);
    }
    head.appendChild(hr);
    table.appendChild(head);
    const body = document.createElement("tbody");
    for (const f of from) {
      const row = document.createElement("tr");
      const th = document.createElement("th");
      th.className = "col";
      th.textContent = f;
      th.title = describe(dim, f) || f;
      row.appendChild(th);
      for (const t of to) {
        const n = counts.get(f + "\u001f" + t) || 0;
        const td = cell(row, n ? fmt(n) : "");
        if (n) td.style.backgroundColor = "rgba(51, 102, 204, " + (0.12 + 0.6 * n / max).toFixed(2) + ")";
      }
      body.appendChild(row);
    }
    table.appendChild(body);
    $("flows-note").textContent = "Rows: previous segment (\"new\": the customer's first segment of " +
      "the dimension); columns: the segment entered. The " + top.length + " segments with the most " +
      "moves are shown" + (hasOther ? "; \"other\" groups the remaining " + other + "." : ".");
    const described = top.map((s) => [s, describe(dim, s)]).filter(([, d]) => d);
    $("flows-legend").textContent = described.map(([s, d]) => s + ": " + d).join("; ");
  }

  // --- segment report (/api/report) ------------------------------------------------------
  function renderReport() {
    const doc = state.report;
    if (!doc) return;
    const dims = doc.dimensions.map((d) => d.dimension).sort();
    fillSelect($("report-dim"), dims);
    const dim = doc.dimensions.find((d) => d.dimension === $("report-dim").value);
    const table = $("report");
    $("report-note").textContent = "last " + duration(doc.window_s) + "; member figures from up to " +
      fmt(doc.sample) + " members a segment (" + doc.currency + ")";
    if (!dim || !dim.segments.length) {
      emptyTable(table, "no segment yet");
      return;
    }
    table.replaceChildren();
    headRow(table, ["segment", "description", "size", "share", "change", "entries", "exits",
                    "conversion", "revenue/customer", "CLV", "P(alive)", "flags"]);
    const body = document.createElement("tbody");
    for (const r of dim.segments) {
      const row = document.createElement("tr");
      cell(row, r.segment);
      cell(row, describe(dim.dimension, r.segment), "desc");
      cell(row, fmt(r.size));
      cell(row, (r.share * 100).toFixed(1) + "%");
      const ch = r.change || {};
      cell(row, ch.delta === null || ch.delta === undefined ? "–" : (ch.delta >= 0 ? "+" : "") + fmt(ch.delta));
      cell(row, fmt(r.entries));
      cell(row, fmt(r.exits));
      cell(row, pct(r.conversion));
      cell(row, money(r.revenue_per_customer));
      cell(row, money(r.clv));
      cell(row, r.p_alive === null || r.p_alive === undefined ? "–" : fmt(r.p_alive, 3));
      const flags = [r.over_broad ? "over-broad" : "", r.stale ? "stale" : "", r.sampled ? "sampled" : ""]
        .filter(Boolean).join(", ");
      cell(row, flags || "–", flags.includes("over") || flags.includes("stale") ? "fault" : "text");
      body.appendChild(row);
    }
    table.appendChild(body);
  }

  // --- dead letters ------------------------------------------------------------------------
  function renderDeadletters(doc) {
    state.deadletters = doc;
    const table = $("deadletters");
    $("deadletters-note").textContent = "last 24 hours: " + fmt(doc.total) + " dead letters in " +
      doc.topic + " (of the newest " + fmt(doc.scan_limit) + " a partition)";
    if (!doc.kinds.length) {
      emptyTable(table, "no dead letters in the last 24 hours");
      return;
    }
    table.replaceChildren();
    headRow(table, ["reason", "count", "example", "example id", "input topics", "last"]);
    const body = document.createElement("tbody");
    for (const k of doc.kinds) {
      const row = document.createElement("tr");
      cell(row, k.kind);
      cell(row, fmt(k.count));
      cell(row, k.example.reason, "text");
      cell(row, k.example.deadletter);
      cell(row, Object.entries(k.topics).map(([t, n]) => t + " " + fmt(n)).join(", "), "text");
      cell(row, isoLabel(k.last));
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

  // --- customer value --------------------------------------------------------------------
  // /api/value: the model, the value segments' sizes, and P(alive), CLV deciles and the
  // BG/NBD fit over a sample of buyers.
  const VALUE_SEGMENTS = ["top", "high", "medium", "low", "churned"];

  function barChart(id, xTitle, yTitle) {
    const chart = new window.Chart($(id), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: {
          x: { title: { display: true, text: xTitle } },
          y: { beginAtZero: true, title: { display: true, text: yTitle } },
        },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      },
    });
    state.valueCharts[id] = chart;
    return chart;
  }

  function modelLine(m) {
    const n = (x, digits) => (x === null || x === undefined ? "–" : fmt(x, digits));
    const spend = m.p === null ? "Gamma-Gamma not fitted (too few repeat buyers)" :
      "Gamma-Gamma p " + n(m.p, 3) + ", q " + n(m.q, 3) + ", v " + n(m.v, 3);
    return "Model version " + m.version + ", fitted " + dateLabel(m.fitted_at) + " UTC: " +
      fmt(m.customers) + " customers, " + fmt(m.repeat_customers) + " repeat customers, " +
      "log-likelihood " + n(m.log_likelihood, 1) + "; BG/NBD r " + n(m.r, 3) + ", alpha " +
      n(m.alpha_days, 3) + " days, a " + n(m.a, 3) + ", b " + n(m.b, 3) + "; " + spend + ".";
  }

  function fillTable(table, rows) {
    // rows: [[header, ...cells]]
    const body = document.createElement("tbody");
    for (const [head, ...cells] of rows) {
      const row = document.createElement("tr");
      const th = document.createElement("th");
      th.className = "col";
      th.textContent = head;
      row.appendChild(th);
      for (const c of cells) cell(row, c);
      body.appendChild(row);
    }
    table.replaceChildren(body);
  }

  function renderValue(doc) {
    state.value = doc;
    const m = doc.model;
    if (!m) {
      $("value-model").textContent = "No value model yet: the worker fits one every " +
        "SEGSTREAM_CLV_REFIT_S once buyers have purchase history (or run `segstream clv --fit`).";
      $("value-body").hidden = true;
      return;
    }
    $("value-model").textContent = modelLine(m);
    $("value-body").hidden = false;
    if (!state.valueCharts["c-value"]) {
      barChart("c-value", "value segment", "customers");
      barChart("c-alive", "P(alive)", "buyers");
      barChart("c-fit", "repeat purchase days (x)", "buyers");
    }
    const charts = state.valueCharts;
    setSeries(charts["c-value"], VALUE_SEGMENTS,
      [{ label: "customers", data: VALUE_SEGMENTS.map((s) => doc.segments[s] || 0) }]);
    const bins = doc.p_alive.map((_, i) => (i / 10).toFixed(1) + "–" + ((i + 1) / 10).toFixed(1));
    setSeries(charts["c-alive"], bins, [{ label: "sampled buyers", data: doc.p_alive }]);
    setSeries(charts["c-fit"], doc.fit.map((r) => r.k), [
      { label: "actual", data: doc.fit.map((r) => r.actual) },
      { label: "expected (BG/NBD)", data: doc.fit.map((r) => r.expected) },
    ]);
    fillTable($("value-fit"), [
      ["x (repeat days)", ...doc.fit.map((r) => r.k)],
      ["actual", ...doc.fit.map((r) => fmt(r.actual))],
      ["expected", ...doc.fit.map((r) => fmt(r.expected, 1))],
    ]);
    $("value-sample").textContent = "Sample of " + fmt(doc.customers) + " buyers, scored " +
      (doc.computed_at ? clockLabel(doc.computed_at) + " UTC" : "–") + "; CLV over " +
      fmt(doc.horizon_days) + " days.";
    fillTable($("value-deciles"), [
      ["CLV quantile", ...doc.clv_deciles.map((_, i) => (i + 1) * 10 + "%")],
      ["CLV (" + doc.currency + ")", ...doc.clv_deciles.map((v) => money(v))],
    ]);
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
    state.ready = state.polls >= 2 && state.sizes !== null && state.flows !== null &&
      state.segments !== null && state.ops !== null;
  }

  // The operating charts' window is kept for the tab too.
  const savedOps = sessionStorage.getItem("segstream.ops");
  if (savedOps in OPS_WINDOW) $("ops-window").value = savedOps;

  async function pollOps(changed = false) {
    const win = $("ops-window").value;
    const age = state.ops ? Date.now() / 1000 - state.opsReadAt : Infinity;
    if (!changed && age < OPS_REREAD_S[win] - 1) return;
    state.opsReadAt = Date.now() / 1000;
    const query = new URLSearchParams({ since: win, every: OPS_EVERY[win] + "s" });
    state.ops = await api("/api/history?" + query.toString());
    renderOps();
  }

  // The sizes chart's dimension and window are kept for the tab: a reload shows the same.
  const savedSizes = JSON.parse(sessionStorage.getItem("segstream.sizes") || "{}");
  if (savedSizes.window in SIZES_EVERY) $("sizes-window").value = savedSizes.window;

  function saveSizes() {
    sessionStorage.setItem("segstream.sizes", JSON.stringify(
      { dimension: $("sizes-dim").value, window: $("sizes-window").value }));
  }

  async function pollSizes() {
    if (!state.segments) return; // the dimension list comes from /segments
    const dims = dimensionsNow();
    const select = $("sizes-dim");
    fillSelect(select, dims);
    if (savedSizes.dimension && dims.includes(savedSizes.dimension)) {
      select.value = savedSizes.dimension;
      delete savedSizes.dimension;
    }
    const dim = select.value;
    if (!dim) return;
    const win = $("sizes-window").value;
    const query = new URLSearchParams({ since: win, every: SIZES_EVERY[win] + "s", dimension: dim });
    const doc = await api("/api/sizes?" + query.toString());
    state.sizes = { ...doc, dimension: dim };
    renderSizes();
  }

  async function pollSegments() {
    state.segments = (await api("/segments")).segments;
    renderSegments();
    if (!state.sizes) await pollSizes();
  }

  async function pollVocabulary() {
    state.vocabulary = await api("/api/vocabulary");
    renderSegments();
    renderSizes();
    renderFlows();
    renderReport();
  }

  async function pollFlows() {
    state.flows = await api("/api/flows?window=" + encodeURIComponent($("flows-window").value));
    renderFlows();
  }

  async function pollReport() {
    const doc = await api("/api/report?since=7d");
    state.report = doc;
    renderReport();
  }

  async function pollDeadletters() {
    renderDeadletters(await api("/api/deadletters?since=24h&limit=20"));
  }

  async function pollActions() {
    const query = new URLSearchParams();
    if ($("actions-since").value) query.set("since", $("actions-since").value);
    if ($("actions-until").value) query.set("until", $("actions-until").value);
    const q = query.toString();
    renderActions(await api("/api/actions" + (q ? "?" + q : "")));
  }

  async function pollValue() {
    renderValue(await api("/api/value"));
  }

  function start() {
    every(VOCABULARY_EVERY_MS, pollVocabulary);
    every(STATUS_EVERY_MS, pollStatus);
    every(OPS_EVERY_MS, pollOps);
    every(SEGMENTS_EVERY_MS, pollSegments);
    every(SIZES_EVERY_MS, pollSizes);
    every(FLOWS_EVERY_MS, pollFlows);
    every(REPORT_EVERY_MS, pollReport);
    every(DEADLETTERS_EVERY_MS, pollDeadletters);
    every(ACTIONS_EVERY_MS, pollActions);
    every(VALUE_EVERY_MS, pollValue);
  }

  const report = (e) => state.errors.push(String(e));
  lineChart("c-throughput", "per second");
  lineChart("c-lag", "messages");
  lineChart("c-fresh", "seconds");
  lineChart("c-sizes", "customers");
  for (const id of ["sizes-dim", "sizes-window"]) {
    $(id).addEventListener("change", () => {
      saveSizes();
      pollSizes().catch(report);
    });
  }
  $("ops-window").addEventListener("change", () => {
    sessionStorage.setItem("segstream.ops", $("ops-window").value);
    pollOps(true).catch(report);
  });
  $("sizes-search").addEventListener("input", renderSegments);
  $("flows-dim").addEventListener("change", renderFlows);
  $("report-dim").addEventListener("change", renderReport);
  $("flows-window").addEventListener("change", () => pollFlows().catch(report));
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (id) lookUp(id).catch(report);
  });
  for (const id of ["actions-since", "actions-until"]) {
    $(id).addEventListener("change", () => pollActions().catch(report));
  }
  start();
})();
