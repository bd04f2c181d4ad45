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
        el("td", { class: "mono", text: t.name }),
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
            el("div", { class: "mono", text: m.name }),
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

  // -- refresh -----------------------------------------------------------------------------------

  function refreshAll() {
    loadWorkspace();
    loadTables();
    loadModels();
    loadJobs();
  }

  $("refresh").addEventListener("click", refreshAll);
  setInterval(() => {
    if (document.visibilityState === "visible" && $("auth").classList.contains("hidden")) loadJobs();
  }, JOBS_REFRESH_MS);

  // /?q=SELECT… opens the page with that query run (links to a query can be shared).
  const shared = new URLSearchParams(window.location.search).get("q");
  if (shared) {
    $("sql").value = shared;
    runSql();
  }
  refreshAll();
})();
