// Shipyard console: one page over the REST API (relative /v1/ URLs only; no framework, no CDN).
"use strict";

(function () {
  const TOKEN_KEY = "shipyard.token";
  const MAX_RESULT_ROWS = 500;
  const JOBS_REFRESH_MS = 5000;

  const $ = (id) => document.getElementById(id);

  // -- API ---------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || "HTTP " + status);
      this.status = status;
      this.code = body && body.code;
      this.details = (body && body.details) || {};
    }
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
    }
    const response = await fetch(path, { method: opts.method, headers: headers, body: opts.body });
    let body = null;
    const type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") >= 0) body = await response.json();
    if (response.status === 401 || response.status === 403) {
      askForToken(body && body.message);
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // -- token -------------------------------------------------------------------------------------

  function askForToken(message) {
    $("auth").classList.remove("hidden");
    $("auth-message").textContent = localStorage.getItem(TOKEN_KEY) ? message || "" : "";
  }

  $("auth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("auth").classList.add("hidden");
    refreshAll();
  });

  // -- helpers -----------------------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function fill(tbody, rows, columns, emptyText) {
    tbody.replaceChildren();
    if (!rows.length) {
      tbody.appendChild(el("tr", {}, el("td", { class: "empty", colspan: String(columns), text: emptyText })));
      return;
    }
    for (const row of rows) tbody.appendChild(row);
  }

  function problem(error) {
    return error.status === 401 || error.status === 403 ? "Enter the server's token above." : error.message;
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return isNaN(date) ? String(iso) : date.toLocaleString();
  }

  function duration(job) {
    if (!job.started_at) return "";
    const end = job.ended_at ? new Date(job.ended_at) : new Date();
    const seconds = Math.max(0, (end - new Date(job.started_at)) / 1000);
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const minutes = Math.floor(seconds / 60);
    return minutes < 60 ? minutes + " m " + Math.round(seconds % 60) + " s" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " m";
  }

  function number(value) {
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? value.toLocaleString() : value.toPrecision(4);
  }

  // -- workspace ---------------------------------------------------------------------------------

  async function loadWorkspace() {
    try {
      const ws = await api("/v1/workspace");
      $("workspace").textContent = ws.home + " · Shipyard " + ws.version;
    } catch (error) {
      $("workspace").textContent = error.status === 401 || error.status === 403 ? "token needed" : error.message;
    }
  }

  // -- tables ------------------------------------------------------------------------------------

  async function loadTables() {
    const tbody = $("tables").tBodies[0];
    try {
      const page = await api("/v1/tables?page_size=200");
      $("tables-count").textContent = page.items.length + (page.next_page_token ? "+" : "") + " tables";
      fill(tbody, page.items.map((t) => el("tr", {}, [
        el("td", { class: "mono" }, lineageLink("tables/" + t.name, t.name)),
        el("td", { class: "num", text: number(t.num_rows) }),
        el("td", { class: "num", text: t.version === null ? "" : String(t.version) }),
        el("td", { text: when(t.updated_at) }),
      ])), 4, "No tables yet — load one with the SDK or `shipyard tables load`.");
    } catch (error) {
      fill(tbody, [], 4, problem(error));
    }
  }

  // -- models ------------------------------------------------------------------------------------

  const KEY_METRICS = ["roc_auc", "accuracy", "f1_score", "r2_score", "mean_absolute_error", "log_loss"];

  function keyMetrics(metrics) {
    const entries = Object.entries(metrics || {}).filter(([, v]) => typeof v === "number");
    entries.sort((a, b) => rank(a[0]) - rank(b[0]));
    return entries.slice(0, 3);
  }

  function rank(name) {
    const i = KEY_METRICS.indexOf(name);
    return i < 0 ? KEY_METRICS.length : i;
  }

  async function loadModels() {
    const tbody = $("models").tBodies[0];
    try {
      const page = await api("/v1/models?page_size=100");
      $("models-count").textContent = page.items.length + (page.next_page_token ? "+" : "") + " models";
      const rows = await Promise.all(page.items.map(async (m) => {
        let metrics = [];
        try {
          const version = await api("/v1/models/" + encodeURIComponent(m.name) + "/aliases/default");
          metrics = keyMetrics(version.metrics);
        } catch (error) {
          metrics = [];
        }
        const aliases = Object.entries(m.aliases || {}).map(([a, v]) => el("span", { class: "pill", text: a + " → " + v }));
        return el("tr", {}, [
          el("td", {}, [
            el("div", {}, lineageLink("models/" + m.name, m.name)),
            el("div", { class: "muted", text: (m.model_type || "").toLowerCase().replace(/_/g, " ") }),
          ]),
          el("td", { class: "num", text: String(m.latest_version) }),
          el("td", {}, aliases),
          el("td", { class: "wrap" }, metrics.map(([k, v]) => el("span", { class: "metric" }, [
            el("span", { class: "muted", text: k + " " }), number(v),
          ]))),
        ]);
      }));
      fill(tbody, rows, 4, "No models yet — train one with CREATE MODEL.");
    } catch (error) {
      fill(tbody, [], 4, problem(error));
    }
  }

  // -- jobs --------------------------------------------------------------------------------------

  async function loadJobs() {
    const tbody = $("jobs").tBodies[0];
    try {
      const page = await api("/v1/jobs?page_size=25");
      $("jobs-count").textContent = "latest " + page.items.length;
      fill(tbody, page.items.map((j) => {
        const pct = j.progress === null || j.progress === undefined ? null : Math.round(j.progress * 100);
        const progress = pct === null ? "" : el("span", {}, [
          el("span", { class: "bar" }, el("span", { style: "width:" + pct + "%" })),
          pct + "%" + (j.progress_message && j.state === "RUNNING" ? " " + j.progress_message : ""),
        ]);
        const description = j.error ? (j.description || "") + " — " + j.error.message : j.description || "";
        return el("tr", {}, [
          el("td", {}, el("span", { class: "state " + j.state, text: j.state })),
          el("td", { text: j.kind }),
          el("td", { class: "wrap mono", text: description, title: j.id }),
          el("td", {}, progress),
          el("td", { class: "num", text: duration(j) }),
          el("td", { text: when(j.started_at || j.created_at) }),
        ]);
      }), 6, "No jobs yet.");
    } catch (error) {
      fill(tbody, [], 6, problem(error));
    }
  }

  // -- SQL ---------------------------------------------------------------------------------------

  function renderResult(result) {
    const target = $("sql-result");
    target.replaceChildren();
    const columns = result.schema.map((c) => c.name);
    if (!columns.length) {
      target.appendChild(el("div", { class: "muted", text: result.message || result.statement_type + " done" }));
      return;
    }
    const numeric = /^(u?int\d*|float|double|halffloat|decimal)/;
    const head = el("tr", {}, result.schema.map((c) => el("th", {
      title: c.type, text: c.name, class: numeric.test(c.type) ? "num" : "",
    })));
    const rows = result.rows.slice(0, MAX_RESULT_ROWS).map((row) => el("tr", {}, columns.map((name) => {
      const value = row[name];
      if (value === null || value === undefined) return el("td", { class: "null", text: "null" });
      if (typeof value === "number") return el("td", { class: "num", text: number(value) });
      if (typeof value === "object") return el("td", { class: "mono wrap", text: JSON.stringify(value) });
      return el("td", { text: String(value) });
    })));
    const table = el("table", { class: "grid" }, [el("thead", {}, head), el("tbody", {}, rows)]);
    target.appendChild(el("div", { class: "table-wrap" }, table));
    const shown = Math.min(result.rows.length, MAX_RESULT_ROWS);
    const note = result.num_rows + (result.num_rows === 1 ? " row" : " rows") + (shown < result.num_rows ? " (showing " + shown + ")" : "");
    target.appendChild(el("div", { class: "muted", text: note + (result.message ? " · " + result.message : "") }));
  }

  function sqlErrorText(error) {
    const d = error.details || {};
    let text = error.message;
    if (d.line) text += "\nline " + d.line + ", column " + d.column + (d.highlight ? " near '" + d.highlight + "'" : "");
    return text;
  }

  async function runSql(event) {
    if (event) event.preventDefault();
    const query = $("sql").value;
    if (!query.trim()) return;
    const button = $("run");
    button.disabled = true;
    $("sql-error").classList.add("hidden");
    $("sql-status").textContent = "running…";
    const started = performance.now();
    try {
      const result = await api("/v1/queries", { method: "POST", json: { query: query } });
      $("sql-status").textContent = result.statement_type + " · " + ((performance.now() - started) / 1000).toFixed(2) + " s";
      renderResult(result);
      if (result.statement_type !== "SELECT") refreshAll();
      else loadJobs();
    } catch (error) {
      $("sql-status").textContent = "";
      $("sql-result").replaceChildren();
      $("sql-error").textContent = sqlErrorText(error);
      $("sql-error").classList.remove("hidden");
      loadJobs();
    } finally {
      button.disabled = false;
    }
  }

  $("sql-form").addEventListener("submit", runSql);
  $("sql").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) runSql(event);
  });

  // -- experiments & runs ------------------------------------------------------------------------

  const MAX_COMPARE = 5;
  const COLORS = ["#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a"];
  // The SVG namespace is a name, never fetched; spelled in parts so the assets hold no URL.
  const SVG_NS = ["http", "//www.w3.org/2000/svg"].join(":");
  const track = { experiment: null, runs: [], selected: [], metric: null };

  function svg(tag, attrs, children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of [].concat(children || [])) if (child) node.appendChild(child);
    return node;
  }

  function syncUrl() {
    const params = new URLSearchParams(window.location.search);
    const set = (key, value) => (value ? params.set(key, value) : params.delete(key));
    set("experiment", track.experiment);
    set("runs", track.selected.join(","));
    set("metric", track.selected.length ? track.metric : null);
    set("filter", $("run-filter").value.trim());
    const query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  async function loadExperiments() {
    const tbody = $("experiments").tBodies[0];
    try {
      const page = await api("/v1/experiments?page_size=200");
      $("experiments-count").textContent = page.items.length + (page.next_page_token ? "+" : "") + " experiments";
      fill(tbody, page.items.map((x) => {
        const row = el("tr", { class: "pick" + (x.name === track.experiment ? " chosen" : ""), title: x.description || "" }, [
          el("td", { class: "mono", text: x.name }),
          el("td", { text: when(x.created_at) }),
        ]);
        row.addEventListener("click", () => chooseExperiment(x.name));
        return row;
      }), 2, "No experiments yet — log a run with sy.start_run().");
    } catch (error) {
      fill(tbody, [], 2, problem(error));
    }
  }

  function chooseExperiment(name) {
    if (name !== track.experiment) track.selected = [];
    track.experiment = name;
    for (const row of $("experiments").tBodies[0].rows) {
      row.classList.toggle("chosen", row.cells[0].textContent === name && row.classList.contains("pick"));
    }
    loadRuns();
  }

  function span(start, end) {
    if (!start) return "";
    const seconds = Math.max(0, ((end ? new Date(end) : new Date()) - new Date(start)) / 1000);
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const minutes = Math.floor(seconds / 60);
    return minutes < 60 ? minutes + " m " + Math.round(seconds % 60) + " s" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " m";
  }

  function keysOf(runs, field) {
    const keys = new Set();
    for (const run of runs) for (const key of Object.keys(run[field] || {})) keys.add(key);
    return [...keys].sort();
  }

  async function loadRuns() {
    const thead = $("runs").tHead;
    const tbody = $("runs").tBodies[0];
    $("runs-error").classList.add("hidden");
    if (!track.experiment) return;
    $("runs-count").textContent = "loading…";
    const filter = $("run-filter").value.trim();
    let path = "/v1/runs?page_size=200&order_by=" + encodeURIComponent("start_time DESC") + "&experiment=" + encodeURIComponent(track.experiment);
    if (filter) path += "&filter=" + encodeURIComponent(filter);
    try {
      const page = await api(path);
      track.runs = page.items;
    } catch (error) {
      track.runs = [];
      $("runs-count").textContent = "";
      thead.replaceChildren();
      fill(tbody, [], 1, error.status === 400 ? "No runs: the filter is not valid." : problem(error));
      if (error.status === 400) {
        $("runs-error").textContent = error.message;
        $("runs-error").classList.remove("hidden");
      }
      return;
    }
    $("runs-count").textContent = track.experiment + " · " + track.runs.length + (track.runs.length === 1 ? " run" : " runs") + (filter ? " matching" : "");
    const params = keysOf(track.runs, "params");
    const metrics = keysOf(track.runs, "metrics");
    thead.replaceChildren(el("tr", {}, [
      el("th", { title: "Compare up to " + MAX_COMPARE + " runs" }, "✓"),
      el("th", { text: "Run" }), el("th", { text: "Status" }), el("th", { text: "Started" }),
      el("th", { class: "num", text: "Duration" }),
      ...params.map((k) => el("th", { class: "param", text: k, title: "params." + k })),
      ...metrics.map((k) => el("th", { class: "num metric-col", text: k, title: "metrics." + k })),
    ]));
    fill(tbody, track.runs.map((r) => {
      const box = el("input", { type: "checkbox", "aria-label": "Compare " + r.name, value: r.id });
      box.checked = track.selected.includes(r.id);
      box.addEventListener("change", () => toggleRun(r.id, box.checked));
      return el("tr", { class: box.checked ? "chosen" : "" }, [
        el("td", {}, box),
        el("td", { class: "mono", text: r.name, title: r.id }),
        el("td", {}, el("span", { class: "state " + r.status, text: r.status })),
        el("td", { text: when(r.start_time) }),
        el("td", { class: "num", text: span(r.start_time, r.end_time) }),
        ...params.map((k) => el("td", { class: "mono", text: r.params[k] === undefined ? "" : r.params[k] })),
        ...metrics.map((k) => el("td", { class: "num", text: r.metrics[k] === undefined ? "" : number(r.metrics[k]) })),
      ]);
    }), 5 + params.length + metrics.length, filter ? "No run matches the filter." : "No runs in this experiment yet.");
    // keep only selections that are still listed
    track.selected = track.selected.filter((id) => track.runs.some((r) => r.id === id));
    limitChecks();
    renderCompare();
  }

  function toggleRun(id, on) {
    track.selected = track.selected.filter((x) => x !== id);
    if (on && track.selected.length < MAX_COMPARE) track.selected.push(id);
    for (const row of $("runs").tBodies[0].rows) {
      const box = row.querySelector("input[type=checkbox]");
      if (box) row.classList.toggle("chosen", track.selected.includes(box.value));
    }
    limitChecks();
    renderCompare();
  }

  function limitChecks() {
    const full = track.selected.length >= MAX_COMPARE;
    for (const box of $("runs").querySelectorAll("input[type=checkbox]")) {
      box.checked = track.selected.includes(box.value);
      box.disabled = full && !box.checked;
    }
  }

  function renderCompare() {
    syncUrl();
    const runs = track.selected.map((id) => track.runs.find((r) => r.id === id)).filter(Boolean);
    $("compare").classList.toggle("hidden", !runs.length);
    if (!runs.length) return;
    const row = (label, values, cls) => {
      const differ = new Set(values.map((v) => (v === undefined ? "" : String(v)))).size > 1;
      return el("tr", { class: differ && runs.length > 1 ? "differs" : "" }, [
        el("th", { class: "key", text: label }),
        ...values.map((v) => el("td", { class: cls, text: v === undefined ? "—" : typeof v === "number" ? number(v) : String(v) })),
      ]);
    };
    const head = el("tr", {}, [el("th", { text: "" }), ...runs.map((r, i) => el("th", {}, [
      el("span", { class: "swatch", style: "background:" + COLORS[i % COLORS.length] }), r.name,
    ]))]);
    const body = [row("status", runs.map((r) => r.status), "")];
    body.push(row("duration", runs.map((r) => span(r.start_time, r.end_time)), "num"));
    for (const k of keysOf(runs, "params")) body.push(row("params." + k, runs.map((r) => r.params[k]), "mono"));
    for (const k of keysOf(runs, "metrics")) body.push(row("metrics." + k, runs.map((r) => r.metrics[k]), "num"));
    $("compare-table").replaceChildren(el("thead", {}, head), el("tbody", {}, body));

    const keys = keysOf(runs, "metrics");
    if (!keys.includes(track.metric)) track.metric = keys.includes("loss") ? "loss" : keys[0] || null;
    const select = $("metric-key");
    select.replaceChildren(...keys.map((k) => el("option", { value: k, text: k })));
    if (track.metric) select.value = track.metric;
    syncUrl();
    drawCurves(runs);
  }

  $("metric-key").addEventListener("change", () => {
    track.metric = $("metric-key").value;
    renderCompare();
  });

  async function metricHistory(runId, key) {
    const points = [];
    let token = null;
    for (let i = 0; i < 20; i++) {
      const page = await api("/v1/runs/" + encodeURIComponent(runId) + "/metrics/" + encodeURIComponent(key) + "?page_size=5000" + (token ? "&page_token=" + encodeURIComponent(token) : ""));
      points.push(...page.items);
      token = page.next_page_token;
      if (!token) break;
    }
    return points;
  }

  let drawing = 0;
  async function drawCurves(runs) {
    const key = track.metric;
    const chart = $("chart");
    const legend = $("legend");
    const ticket = ++drawing;
    if (!key) {
      chart.replaceChildren(el("div", { class: "muted empty-chart", text: "These runs logged no metrics." }));
      legend.replaceChildren();
      return;
    }
    let series;
    try {
      series = await Promise.all(runs.map(async (r, i) => ({ run: r, color: COLORS[i % COLORS.length], points: await metricHistory(r.id, key) })));
    } catch (error) {
      if (ticket === drawing) chart.replaceChildren(el("div", { class: "error", text: problem(error) }));
      return;
    }
    if (ticket !== drawing) return; // a newer selection is being drawn
    chart.replaceChildren(lineChart(series, key));
    legend.replaceChildren(...series.map((s) => el("span", { class: "legend-item" }, [
      el("span", { class: "swatch", style: "background:" + s.color }),
      s.run.name + " (" + s.points.length + (s.points.length === 1 ? " point)" : " points)"),
    ])));
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) {
      const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
      lo -= pad;
      hi += pad;
    }
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const start = Math.floor(lo / step) * step;
    const end = Math.ceil(hi / step) * step;
    const ticks = [];
    for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
    return { lo: start, hi: end, ticks: ticks };
  }

  function tickLabel(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
    return String(Number(v.toPrecision(4)));
  }

  function lineChart(series, key) {
    const W = 640, H = 280, M = { left: 56, right: 16, top: 12, bottom: 36 };
    const all = series.flatMap((s) => s.points);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, class: "line-chart", role: "img", "aria-label": key + " by step" });
    if (!all.length) {
      root.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis-label", text: "no points for " + key }));
      return root;
    }
    const steps = all.map((p) => p.step);
    const values = all.map((p) => p.value);
    let xs = niceTicks(Math.min(...steps), Math.max(...steps), 6);
    if (xs.ticks.length > 1 && xs.ticks[1] - xs.ticks[0] < 1) xs = { lo: xs.lo, hi: xs.hi, ticks: xs.ticks.filter(Number.isInteger) };
    const ys = niceTicks(Math.min(...values), Math.max(...values), 5);
    const px = (v) => M.left + ((v - xs.lo) / (xs.hi - xs.lo)) * (W - M.left - M.right);
    const py = (v) => H - M.bottom - ((v - ys.lo) / (ys.hi - ys.lo)) * (H - M.top - M.bottom);
    const grid = svg("g", { class: "grid-lines" });
    for (const t of ys.ticks) {
      grid.appendChild(svg("line", { x1: M.left, x2: W - M.right, y1: py(t), y2: py(t) }));
      grid.appendChild(svg("text", { x: M.left - 6, y: py(t) + 4, "text-anchor": "end", class: "tick", text: tickLabel(t) }));
    }
    for (const t of xs.ticks) {
      grid.appendChild(svg("line", { x1: px(t), x2: px(t), y1: H - M.bottom, y2: H - M.bottom + 4, class: "tick-mark" }));
      grid.appendChild(svg("text", { x: px(t), y: H - M.bottom + 17, "text-anchor": "middle", class: "tick", text: tickLabel(t) }));
    }
    root.appendChild(grid);
    root.appendChild(svg("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }));
    root.appendChild(svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }));
    root.appendChild(svg("text", { x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label", text: "step" }));
    root.appendChild(svg("text", { x: 12, y: M.top + 2, class: "axis-label", "dominant-baseline": "hanging", transform: "rotate(-90 12 " + (M.top + 2) + ")", "text-anchor": "end", text: key }));
    for (const s of series) {
      const d = s.points.map((p, i) => (i ? "L" : "M") + px(p.step).toFixed(1) + " " + py(p.value).toFixed(1)).join(" ");
      const group = svg("g", { class: "series" }, svg("title", { text: s.run.name }));
      group.appendChild(svg("path", { d: d || "M0 0", fill: "none", stroke: s.color, "stroke-width": 2, "stroke-linejoin": "round", "data-run": s.run.id }));
      if (s.points.length <= 40) {
        for (const p of s.points) {
          group.appendChild(svg("circle", { cx: px(p.step).toFixed(1), cy: py(p.value).toFixed(1), r: 2.5, fill: s.color }, svg("title", { text: s.run.name + " · step " + p.step + " · " + number(p.value) })));
        }
      }
      root.appendChild(group);
    }
    return root;
  }

  $("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadRuns();
  });

  // -- lineage -----------------------------------------------------------------------------------

  function lineagePath(resource) {
    return resource.split("/").map(encodeURIComponent).join("/");
  }

  async function openLineage(resource) {
    resource = (resource || "").trim().replace(/^\/+/, "");
    if (!resource) return;
    $("lineage-resource").value = resource;
    $("lineage-error").classList.add("hidden");
    $("lineage-status").textContent = "loading…";
    const params = new URLSearchParams(window.location.search);
    params.set("lineage", resource);
    history.replaceState(null, "", window.location.pathname + "?" + params.toString());
    try {
      const graph = await api("/v1/lineage/" + lineagePath(resource) + "?direction=" + encodeURIComponent($("lineage-direction").value));
      $("lineage-status").textContent = graph.root + " · " + graph.artifacts.length + " artifacts, " + graph.executions.length + " executions";
      $("lineage-graph").replaceChildren(lineageSvg(graph));
    } catch (error) {
      $("lineage-status").textContent = "";
      $("lineage-graph").replaceChildren();
      $("lineage-error").textContent = problem(error);
      $("lineage-error").classList.remove("hidden");
    }
  }

  function layoutLineage(graph) {
    const nodes = new Map();
    for (const a of graph.artifacts) nodes.set("a" + a.id, { key: "a" + a.id, artifact: a, col: null });
    for (const x of graph.executions) nodes.set("x" + x.id, { key: "x" + x.id, execution: x, col: null });
    // artifact INPUT of execution: artifact → execution; OUTPUT: execution → artifact
    const links = graph.edges.filter((e) => nodes.has("a" + e.artifact_id) && nodes.has("x" + e.execution_id)).map((e) => (
      e.type === "INPUT" ? { from: "a" + e.artifact_id, to: "x" + e.execution_id } : { from: "x" + e.execution_id, to: "a" + e.artifact_id }
    ));
    const rootNode = [...nodes.values()].find((n) => n.artifact && n.artifact.uri === graph.root) || nodes.values().next().value;
    if (!rootNode) return { nodes: [], links: [] };
    rootNode.col = 0;
    const queue = [rootNode.key];
    const visit = () => {
      while (queue.length) {
        const key = queue.shift();
        const col = nodes.get(key).col;
        for (const l of links) {
          if (l.from === key && nodes.get(l.to).col === null) { nodes.get(l.to).col = col + 1; queue.push(l.to); }
          if (l.to === key && nodes.get(l.from).col === null) { nodes.get(l.from).col = col - 1; queue.push(l.from); }
        }
      }
    };
    visit();
    for (const n of nodes.values()) {
      if (n.col === null) { n.col = Math.max(...[...nodes.values()].map((m) => m.col || 0)) + 1; queue.push(n.key); visit(); }
    }
    return { nodes: [...nodes.values()], links: links, root: rootNode.key };
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function lineageSvg(graph) {
    const { nodes, links, root } = layoutLineage(graph);
    if (!nodes.length) return el("div", { class: "muted", text: "Nothing recorded for this resource." });
    const NW = 230, NH = 46, GX = 44, GY = 16, PAD = 12;
    const cols = [...new Set(nodes.map((n) => n.col))].sort((a, b) => a - b);
    const byCol = new Map(cols.map((c) => [c, nodes.filter((n) => n.col === c)]));
    const tallest = Math.max(...[...byCol.values()].map((list) => list.length));
    const W = PAD * 2 + cols.length * NW + (cols.length - 1) * GX;
    const H = PAD * 2 + tallest * NH + (tallest - 1) * GY;
    for (const [c, list] of byCol) {
      list.sort((a, b) => (a.artifact ? a.artifact.uri : a.execution.name).localeCompare(b.artifact ? b.artifact.uri : b.execution.name));
      const top = PAD + ((tallest - list.length) * (NH + GY)) / 2;
      list.forEach((n, i) => { n.x = PAD + cols.indexOf(c) * (NW + GX); n.y = top + i * (NH + GY); });
    }
    const at = new Map(nodes.map((n) => [n.key, n]));
    const root_ = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, class: "lineage-graph", role: "img", "aria-label": "Lineage of " + graph.root });
    const edges = svg("g", { class: "edges" });
    for (const l of links) {
      const a = at.get(l.from), b = at.get(l.to);
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x - 2, y2 = b.y + NH / 2;
      const mid = (x1 + x2) / 2;
      edges.appendChild(svg("path", { d: "M" + x1 + " " + y1 + " C" + mid + " " + y1 + " " + mid + " " + y2 + " " + x2 + " " + y2, class: "edge" }));
      edges.appendChild(svg("polygon", { points: x2 + "," + y2 + " " + (x2 - 7) + "," + (y2 - 4) + " " + (x2 - 7) + "," + (y2 + 4), class: "arrow" }));
    }
    root_.appendChild(edges);
    for (const n of nodes) {
      const isArtifact = Boolean(n.artifact);
      const title = isArtifact ? n.artifact.uri : n.execution.name;
      const sub = isArtifact ? n.artifact.kind.replace(/_/g, " ") : n.execution.kind.replace(/_/g, " ") + (n.execution.description ? " · " + n.execution.description : "");
      const full = isArtifact ? n.artifact.uri + " (" + n.artifact.kind + ")" : n.execution.name + " (" + n.execution.kind + ")" + (n.execution.properties && n.execution.properties.statement ? "\n" + n.execution.properties.statement : n.execution.description ? "\n" + n.execution.description : "");
      const group = svg("g", { class: "node " + (isArtifact ? "artifact " + n.artifact.kind : "execution") + (n.key === root ? " root" : ""), transform: "translate(" + n.x + " " + n.y + ")", "data-uri": isArtifact ? n.artifact.uri : "" }, [
        svg("title", { text: full }),
        svg("rect", { width: NW, height: NH, rx: isArtifact ? 6 : 18 }),
        svg("text", { x: 12, y: 19, class: "node-title", text: shorten(title, 30) }),
        svg("text", { x: 12, y: 35, class: "node-sub", text: shorten(sub, 36) }),
      ]);
      if (isArtifact && /^(tables|models|runs)\//.test(n.artifact.uri) && n.key !== root) {
        group.classList.add("clickable");
        group.addEventListener("click", () => openLineage(n.artifact.uri));
      }
      root_.appendChild(group);
    }
    return root_;
  }

  $("lineage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    openLineage($("lineage-resource").value);
  });

  function lineageLink(resource, label) {
    const link = el("button", { type: "button", class: "linkish mono", title: "Show the lineage of " + resource, text: label });
    link.addEventListener("click", () => {
      openLineage(resource);
      $("lineage").scrollIntoView({ behavior: "smooth", block: "start" });
    });
    return link;
  }

  // -- endpoints ---------------------------------------------------------------------------------

  const AB_METRICS = ["accuracy", "mean_absolute_error", "mean_squared_error"];
  const HISTORY_ROWS = 8;
  // endpoint name -> the metric it was last compared on: a refresh compares it again
  const serving = { compared: {} };
  let endpointsTicket = 0;

  function ms(value) {
    if (typeof value !== "number") return "—";
    return (value < 10 ? value.toFixed(2) : value < 1000 ? value.toFixed(1) : Math.round(value).toLocaleString()) + " ms";
  }

  function figure(value) {
    if (typeof value !== "number") return "—";
    return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3) ? value.toExponential(2) : value.toPrecision(4);
  }

  function signed(value) {
    return (value > 0 ? "+" : "") + figure(value);
  }

  function syncEndpointUrl(name, metric) {
    const params = new URLSearchParams(window.location.search);
    params.set("endpoint", name);
    params.set("compare", metric);
    history.replaceState(null, "", window.location.pathname + "?" + params.toString());
  }

  async function loadEndpoints() {
    const list = $("endpoint-list");
    const ticket = ++endpointsTicket;
    let page;
    try {
      page = await api("/v1/endpoints?page_size=50");
    } catch (error) {
      if (ticket === endpointsTicket) list.replaceChildren(el("div", { class: "empty-state muted", text: problem(error) }));
      return;
    }
    const views = await Promise.all(page.items.map(async (e) => {
      const path = "/v1/endpoints/" + encodeURIComponent(e.name);
      const [stats, changes] = await Promise.all([
        api(path + "/stats").catch((error) => ({ error: error })),
        api(path + "/history?page_size=" + HISTORY_ROWS).catch((error) => ({ error: error })),
      ]);
      return endpointView(e, stats, changes);
    }));
    if (ticket !== endpointsTicket) return; // a newer refresh is being drawn
    $("endpoints-count").textContent = page.items.length + (page.next_page_token ? "+" : "") + (page.items.length === 1 ? " endpoint" : " endpoints");
    if (!page.items.length) {
      list.replaceChildren(el("div", { class: "empty-state muted" }, [
        "No endpoints yet — ", el("code", { text: "shipyard endpoints create NAME" }),
        ", then ", el("code", { text: "shipyard endpoints deploy NAME MODEL" }), ".",
      ]));
      return;
    }
    list.replaceChildren(...views.map((v) => v.node));
    for (const v of views) v.start();
  }

  function endpointView(e, stats, changes) {
    const color = new Map(e.deployments.map((d, i) => [d.id, COLORS[i % COLORS.length]]));
    const live = e.deployments.filter((d) => !d.shadow);
    const head = el("div", { class: "endpoint-head" }, [
      el("h3", { class: "mono", text: e.name }),
      e.description ? el("span", { class: "muted", text: e.description }) : null,
      el("span", { class: "pill", text: "revision " + e.revision }),
      e.sticky_key ? el("span", { class: "pill", title: "Requests with the same value of this field go to the same deployment", text: "sticky on " + e.sticky_key }) : null,
      el("span", { class: "muted grow", text: "updated " + when(e.updated_at) }),
    ]);
    const compare = comparePane(e, color);
    const node = el("article", { class: "endpoint", "data-endpoint": e.name }, [
      head,
      trafficBar(e, live, color),
      el("div", { class: "table-wrap" }, deploymentsTable(e, stats, color)),
      el("div", { class: "endpoint-panes" }, [historyPane(e, changes), compare.node]),
    ]);
    return { node: node, start: compare.start };
  }

  function trafficBar(e, live, color) {
    const shares = live.map((d) => ({ d: d, pct: e.traffic[d.id] || 0 })).filter((s) => s.pct > 0);
    const shadows = e.deployments.filter((d) => d.shadow);
    if (!shares.length) {
      return el("div", { class: "traffic muted" }, [
        "No deployment receives traffic — ", el("code", { text: "shipyard endpoints deploy " + e.name + " MODEL" }),
      ]);
    }
    const label = "Traffic split: " + shares.map((s) => s.d.id + " " + s.pct + "%").join(", ");
    const bar = el("div", { class: "traffic-bar", role: "img", "aria-label": label }, shares.map((s) => el("span", {
      class: "traffic-seg",
      style: "width:" + s.pct + "%;background:" + color.get(s.d.id),
      title: s.d.id + " · " + s.d.model + "@" + s.d.version + " · " + s.pct + "%",
      "data-deployment": s.d.id,
    }, s.pct >= 8 ? s.d.id + " " + s.pct + "%" : "")));
    const legend = el("div", { class: "legend traffic-legend" }, [
      ...shares.map((s) => el("span", { class: "legend-item" }, [
        el("span", { class: "swatch", style: "background:" + color.get(s.d.id) }),
        s.d.id + " " + s.d.model + "@" + s.d.version + " · " + s.pct + "%",
      ])),
      ...shadows.map((d) => el("span", { class: "legend-item" }, [
        el("span", { class: "swatch hollow", style: "border-color:" + color.get(d.id) }),
        d.id + " " + d.model + "@" + d.version + " · shadow, sees a copy of every request",
      ])),
    ]);
    return el("div", { class: "traffic" }, [bar, legend]);
  }

  function deploymentsTable(e, stats, color) {
    const head = el("tr", {}, [
      el("th", { text: "Deployment" }), el("th", { text: "Model" }), el("th", { text: "Alias" }),
      el("th", { class: "num", text: "Traffic" }), el("th", { class: "num", text: "Requests" }),
      el("th", { class: "num", text: "Errors" }), el("th", { class: "num", text: "p50" }),
      el("th", { class: "num", text: "p99" }), el("th", { text: "Deployed" }),
    ]);
    const tbody = el("tbody");
    const failed = stats && stats.error;
    fill(tbody, e.deployments.map((d) => {
      const s = (!failed && stats[d.id]) || {};
      const errors = s.errors || 0;
      return el("tr", { "data-deployment": d.id }, [
        el("td", { class: "mono" }, [
          el("span", { class: "swatch", style: "background:" + color.get(d.id) }), d.id,
          d.shadow ? el("span", { class: "pill shadow", title: "Gets a copy of the traffic; its answers are logged, never returned", text: "shadow" }) : null,
        ]),
        el("td", {}, lineageLink("models/" + d.model + "/versions/" + d.version, d.model + "@" + d.version)),
        el("td", {}, d.alias ? el("span", { class: "pill", text: d.alias }) : ""),
        el("td", { class: "num", text: d.shadow ? "copy" : (e.traffic[d.id] || 0) + "%" }),
        el("td", { class: "num", text: failed ? "" : number(s.requests || 0) }),
        el("td", { class: "num" + (errors ? " bad" : ""), text: failed ? "" : number(errors) + (errors && s.requests ? " (" + ((100 * errors) / s.requests).toFixed(1) + "%)" : "") }),
        el("td", { class: "num", text: ms(s.p50_ms) }),
        el("td", { class: "num", text: ms(s.p99_ms) }),
        el("td", { class: "muted", text: when(d.created_at) + (d.created_by ? " by " + d.created_by : "") }),
      ]);
    }), 9, "No deployments yet — deploy a model: shipyard endpoints deploy " + e.name + " MODEL");
    const table = el("table", { class: "grid deployments" }, [el("thead", {}, head), tbody]);
    if (failed) table.appendChild(el("caption", { class: "muted", text: "stats: " + problem(stats.error) }));
    return table;
  }

  function trafficText(state) {
    if (!state) return "";
    const parts = Object.entries(state.traffic || {}).filter(([, pct]) => pct > 0).map(([id, pct]) => id + " " + pct + "%");
    for (const d of state.deployments || []) if (d.shadow) parts.push(d.id + " shadow");
    return parts.join(" · ") || "no traffic";
  }

  function historyPane(e, changes) {
    const tbody = el("tbody");
    if (changes.error) {
      fill(tbody, [], 5, problem(changes.error));
    } else {
      fill(tbody, changes.items.map((c) => el("tr", {}, [
        el("td", { class: "num", text: String(c.revision) }),
        el("td", { text: when(c.created_at) }),
        el("td", { text: c.actor }),
        el("td", {}, el("span", { class: "pill action", text: c.action })),
        el("td", { class: "mono wrap", text: trafficText(c.after) }),
      ])), 5, "No changes recorded.");
    }
    const head = el("tr", {}, [el("th", { class: "num", text: "Rev" }), el("th", { text: "When" }), el("th", { text: "Who" }), el("th", { text: "Action" }), el("th", { text: "Traffic after" })]);
    const more = !changes.error && changes.next_page_token ? "latest " + changes.items.length : "";
    return el("div", { class: "endpoint-pane" }, [
      el("div", { class: "card-head" }, [el("h3", { text: "Recent changes" }), el("span", { class: "muted", text: more })]),
      el("div", { class: "table-wrap" }, el("table", { class: "grid history" }, [el("thead", {}, head), tbody])),
    ]);
  }

  function comparePane(e, color) {
    const select = el("select", { "aria-label": "Metric for " + e.name }, AB_METRICS.map((m) => el("option", { value: m, text: m })));
    const button = el("button", { type: "submit", text: "Compare" });
    const status = el("span", { class: "muted" }, "from request logs joined with feedback");
    const error = el("div", { class: "error hidden", role: "alert" });
    const result = el("div", { class: "ab-result" });
    const form = el("form", { class: "row ab-form" }, [el("label", { class: "muted" }, ["metric ", select]), button, status]);
    if (serving.compared[e.name]) select.value = serving.compared[e.name];

    async function run(metric) {
      serving.compared[e.name] = metric;
      button.disabled = true;
      status.textContent = "comparing…";
      error.classList.add("hidden");
      try {
        const ab = await api("/v1/endpoints/" + encodeURIComponent(e.name) + ":compare", { method: "POST", json: { metric: metric } });
        status.textContent = "control " + ab.control + " · " + Math.round(ab.confidence_level * 100) + "% intervals" + (ab.include_shadow ? "" : " · shadows left out");
        result.replaceChildren(...abView(ab, color));
      } catch (err) {
        status.textContent = "";
        result.replaceChildren();
        error.textContent = problem(err);
        error.classList.remove("hidden");
      } finally {
        button.disabled = false;
      }
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      syncEndpointUrl(e.name, select.value);
      run(select.value);
    });
    const node = el("div", { class: "endpoint-pane ab", "data-endpoint": e.name }, [
      el("div", { class: "card-head" }, [el("h3", { text: "A/B comparison" }), el("span", { class: "muted", text: "needs ground truth: " }, el("code", { text: ":feedback" }))]),
      form, error, result,
    ]);
    return { node: node, start: () => { if (serving.compared[e.name]) run(serving.compared[e.name]); } };
  }

  function abView(ab, color) {
    const lo = Math.min(...ab.deployments.map((f) => f.ci_low));
    const hi = Math.max(...ab.deployments.map((f) => f.ci_high));
    const head = el("tr", {}, [
      el("th", { text: "Deployment" }), el("th", { class: "num", text: "Requests" }),
      el("th", { class: "num", text: "Labelled" }), el("th", { class: "num metric-col", text: ab.metric }),
      el("th", { text: Math.round(ab.confidence_level * 100) + "% interval" }),
      el("th", { class: "num", text: "p50 / p99" }),
    ]);
    const rows = ab.deployments.map((f) => el("tr", { "data-deployment": f.deployment_id }, [
      el("td", { class: "mono", title: f.model ? f.model + "@" + f.model_version : "" }, [
        el("span", { class: "swatch", style: "background:" + (color.get(f.deployment_id) || "var(--muted)") }), f.deployment_id,
        f.deployment_id === ab.control ? el("span", { class: "pill control", text: "control" }) : null,
      ]),
      el("td", { class: "num", text: number(f.requests) + (f.errors ? " (" + number(f.errors) + " failed)" : "") }),
      el("td", { class: "num", text: number(f.labelled) }),
      el("td", { class: "num metric-value", text: figure(f.metric_value) }),
      el("td", {}, el("div", { class: "ci" }, [
        ciBar(f, lo, hi, color.get(f.deployment_id)),
        el("span", { class: "ci-text", text: "[" + figure(f.ci_low) + ", " + figure(f.ci_high) + "]" }),
      ])),
      el("td", { class: "num", text: ms(f.latency_p50_ms) + " / " + ms(f.latency_p99_ms) }),
    ]));
    const table = el("div", { class: "table-wrap" }, el("table", { class: "grid ab-table" }, [el("thead", {}, head), el("tbody", {}, rows)]));
    const verdicts = ab.comparisons.map((c) => el("div", { class: "verdict" + (c.significant ? " significant" : "") }, [
      el("div", { class: "verdict-text", text: c.verdict }),
      el("div", { class: "muted", text: c.test + " · p = " + figure(c.p_value) + " · difference " + c.treatment + " − " + c.control + " " + signed(c.difference) + " [" + signed(c.difference_ci_low) + ", " + signed(c.difference_ci_high) + "]" + (ab.higher_is_better ? " (higher is better)" : " (lower is better)") }),
    ]));
    return [table, ...verdicts];
  }

  function ciBar(f, lo, hi, stroke) {
    const W = 96, H = 14, P = 5;
    if (!(hi > lo)) { const pad = Math.abs(lo) * 0.05 || 0.05; lo -= pad; hi += pad; }
    const x = (v) => (P + ((v - lo) / (hi - lo)) * (W - 2 * P)).toFixed(1);
    const colour = stroke || "currentColor";
    return svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, class: "ci-chart", role: "img", "aria-label": f.deployment_id + " " + figure(f.metric_value) + " between " + figure(f.ci_low) + " and " + figure(f.ci_high) }, [
      svg("line", { x1: P, x2: W - P, y1: H / 2, y2: H / 2, class: "ci-axis" }),
      svg("line", { x1: x(f.ci_low), x2: x(f.ci_high), y1: H / 2, y2: H / 2, stroke: colour, "stroke-width": 3, "stroke-linecap": "round", class: "ci-range" }),
      svg("circle", { cx: x(f.metric_value), cy: H / 2, r: 3.5, fill: colour, class: "ci-point" }),
    ]);
  }

  // -- refresh -----------------------------------------------------------------------------------

  function refreshAll() {
    loadWorkspace();
    loadTables();
    loadModels();
    loadEndpoints();
    loadExperiments();
    if (track.experiment) loadRuns();
    loadJobs();
  }

  $("refresh").addEventListener("click", refreshAll);
  setInterval(() => {
    if (document.visibilityState === "visible" && $("auth").classList.contains("hidden")) loadJobs();
  }, JOBS_REFRESH_MS);

  // /?q=SELECT… opens the page with that query run (links to a query can be shared);
  // ?experiment=E&runs=ID,ID&metric=K&filter=F opens those runs compared; ?lineage=R a graph;
  // ?endpoint=E&compare=METRIC opens endpoint E's A/B comparison on that metric.
  const url = new URLSearchParams(window.location.search);
  const shared = url.get("q");
  if (shared) {
    $("sql").value = shared;
    runSql();
  }
  if (url.get("experiment")) {
    track.experiment = url.get("experiment");
    track.selected = (url.get("runs") || "").split(",").map((s) => s.trim()).filter(Boolean).slice(0, MAX_COMPARE);
    track.metric = url.get("metric");
    $("run-filter").value = url.get("filter") || "";
  }
  if (url.get("endpoint") && AB_METRICS.includes(url.get("compare"))) {
    serving.compared[url.get("endpoint")] = url.get("compare");
  }
  if (url.get("lineage")) {
    if (["both", "upstream", "downstream"].includes(url.get("direction"))) $("lineage-direction").value = url.get("direction");
    openLineage(url.get("lineage"));
  }
  refreshAll();
})();
