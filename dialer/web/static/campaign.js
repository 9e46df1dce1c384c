// The campaign page: polls the campaign's report (GET /campaigns/{id}/data, the same JSON as
// GET /v1/campaigns/{id}/report) every 2 s until the campaign is finished, and shows it.
// Every element with data-field="a.b.c" shows that path of the report, formatted by its
// data-format (int, float2, pct, seconds, duration, text; optional: text, blank when null); a figure the report lacks shows "—".
"use strict";

(function () {
  const POLL_MS = 2000;
  const root = document.getElementById("campaign");
  const dataUrl = root.dataset.dataUrl;
  const colors = {
    dials: "#2563eb", answers: "#16a34a", live: "#f59e0b",
    campaignCap: "#9333ea", accountCap: "#64748b", bars: "#3b82f6",
  };
  let seriesChart = null;
  let outcomesChart = null;

  function at(report, path) {
    return path.split(".").reduce((v, key) => (v == null ? undefined : v[key]), report);
  }

  function format(value, kind) {
    if (value === undefined || value === null) return kind === "optional" ? "" : "—";
    switch (kind) {
      case "int": return String(value);
      case "float2": return Number(value).toFixed(2);
      case "pct": return (Number(value) * 100).toFixed(1) + " %";
      case "seconds": return Number(value).toFixed(1) + " s";
      case "duration": return duration(Math.round(Number(value)));
      case "optional": return String(value);
      default: return String(value);
    }
  }

  function duration(s) {
    // 59 -> "59 s", 754 -> "12 min 34 s", 5400 -> "1 h 30 min"
    const two = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + two(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + two(Math.floor((s % 3600) / 60)) + " min";
  }

  // The report before issue 13's figures landed (`contacts` a count, contacts by status in
  // `jobs`): mapped onto the report contract's paths so the page shows what it has.
  // Remove once GET /v1/campaigns/{id}/report answers the contract's shape.
  function normalize(r) {
    if (typeof r.contacts !== "number") return r;
    const jobs = r.jobs || {};
    const attempts = Object.values(r.attempts || {}).reduce((a, b) => a + b, 0);
    return Object.assign({}, r, {
      contacts: {
        total: r.contacts, pending: jobs.pending || 0, dialing: jobs.in_progress || 0,
        done: jobs.done || 0, cancelled: jobs.canceled || 0,
      },
      attempts: {
        total: attempts, calls_placed: r.calls_placed, late_calls_hung_up: r.late_calls_hung_up,
      },
      talk_time: { total_s: r.talk_seconds },
      breaker: { trips: r.breaker_trips },
    });
  }

  function showFields(report) {
    for (const el of root.querySelectorAll("[data-field]")) {
      const value = at(report, el.dataset.field);
      el.textContent = format(value, el.dataset.format);
      el.classList.toggle("missing", value === undefined);
    }
    const status = document.getElementById("status");
    status.className = "badge status-" + report.status;
    document.getElementById("status-reason").textContent = report.status_reason || "";
  }

  // The buttons are the actions the campaign's state allows, rendered by the server
  // (dialer.campaign_state.allowed_actions): once the state changes, the page is loaded again.
  function followStatus(status) {
    if (status && status !== root.dataset.status) window.location.reload();
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function showProgress(report) {
    const c = report.contacts || {};
    const final = (c.done || 0) + (c.expired || 0) + (c.cancelled || 0);
    const share = c.total ? final / c.total : 0;
    document.getElementById("progress-final").textContent = String(final);
    document.getElementById("progress-percent").textContent = "(" + (share * 100).toFixed(0) + " %)";
    document.getElementById("progress-bar").style.width = (share * 100).toFixed(1) + "%";
    const finishAt = at(report, "eta.finish_at");
    let eta = "Estimated finish: —";
    if (report.finished) {
      eta = "Finished";
    } else if (finishAt) {
      const minutes = Math.max(0, Math.round((new Date(finishAt) - Date.now()) / 60000));
      eta = "Estimated finish: " + clock(finishAt) + " (in " + minutes + " min)";
    }
    document.getElementById("eta").textContent = eta;
  }

  function flatOutcomes(outcomes) {
    // {"answered": 3, "machine": {"machine_start": 2}, "failed": {"none": 1}}
    //   -> [["answered", 3], ["machine: machine_start", 2], ["failed", 1]]
    const rows = [];
    for (const [name, value] of Object.entries(outcomes || {})) {
      if (value !== null && typeof value === "object") {
        for (const [detail, count] of Object.entries(value)) {
          rows.push([detail === "none" ? name : name + ": " + detail, count]);
        }
      } else {
        rows.push([name, value]);
      }
    }
    return rows.filter(([, count]) => count > 0);
  }

  function chartOptions(extra) {
    return Object.assign({
      animation: false, responsive: true, maintainAspectRatio: false,
      plugins: { legend: { position: "bottom", labels: { usePointStyle: true, boxHeight: 8 } } },
      scales: {
        x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 10 } },
        y: { beginAtZero: true, ticks: { precision: 0 } },
      },
    }, extra);
  }

  function recent(series) {
    // From the first minute with a call (and at least the last 10 minutes): a campaign that
    // began 5 minutes ago is not drawn as an hour of zeros.
    const first = series.findIndex((p) => p.dials || p.answers || p.live);
    if (first < 0) return [];
    return series.slice(Math.min(first, Math.max(0, series.length - 10)));
  }

  function showSeries(report) {
    const series = recent(report.series || []);
    document.getElementById("series-empty").hidden = series.length > 0;
    if (typeof Chart === "undefined") return;
    const labels = series.map((point) => clock(point.minute));
    const line = (label, color, values, dashed) => ({
      label, data: values, borderColor: color, backgroundColor: color, tension: 0,
      pointRadius: dashed || series.length > 30 ? 0 : 2, borderWidth: 2, borderDash: dashed ? [6, 4] : [],
      pointStyle: dashed ? "line" : "circle",
    });
    const datasets = [
      line("Dials", colors.dials, series.map((p) => p.dials)),
      line("Answers", colors.answers, series.map((p) => p.answers)),
      line("Live calls", colors.live, series.map((p) => p.live)),
    ];
    const caps = [
      ["Campaign cap", colors.campaignCap, at(report, "pacing.leases.campaign.cap")],
      ["Account cap", colors.accountCap, at(report, "pacing.leases.account.cap")],
    ];
    for (const [label, color, cap] of caps) {
      if (cap != null) datasets.push(line(label, color, series.map(() => cap), true));
    }
    if (seriesChart === null) {
      seriesChart = new Chart(document.getElementById("series-chart"), {
        type: "line", data: { labels, datasets }, options: chartOptions({}),
      });
    } else {
      seriesChart.data.labels = labels;
      seriesChart.data.datasets = datasets;
      seriesChart.update("none");
    }
  }

  function showOutcomes(report) {
    const rows = flatOutcomes(report.outcomes);
    document.getElementById("outcomes-empty").hidden = rows.length > 0;
    if (typeof Chart === "undefined") return;
    const data = {
      labels: rows.map(([name]) => name.replaceAll("_", " ")),
      datasets: [{ label: "Contacts", data: rows.map(([, n]) => n), backgroundColor: colors.bars }],
    };
    if (outcomesChart === null) {
      outcomesChart = new Chart(document.getElementById("outcomes-chart"), {
        type: "bar", data,
        options: chartOptions({
          indexAxis: "y", plugins: { legend: { display: false } },
          scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
        }),
      });
    } else {
      outcomesChart.data = data;
      outcomesChart.update("none");
    }
  }

  // Number health: one row per caller ID (report.numbers), built with textContent only.
  function showNumbers(report) {
    const body = document.getElementById("numbers-body");
    const numbers = report.numbers || [];
    body.replaceChildren(...numbers.map((n) => {
      const row = document.createElement("tr");
      row.dataset.number = n.number;
      row.classList.toggle("flagged", Boolean(n.flagged));
      const state = (n.flagged ? "flagged" : "ok") +
        (n.rested_at ? "; rested since " + clock(n.rested_at) + ": " + n.rested_reason : "");
      for (const text of [n.number, format(n.calls, "int"), format(n.answer_rate, "pct"),
        format(n.human_rate, "pct"), state]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      return row;
    }));
    document.getElementById("numbers-empty").hidden = numbers.length > 0;
  }

  function show(raw) {
    const report = normalize(raw);
    showFields(report);
    followStatus(report.status);
    showProgress(report);
    showSeries(report);
    showOutcomes(report);
    showNumbers(report);
    const when = report.generated_at ? new Date(report.generated_at) : new Date();
    document.getElementById("updated").textContent =
      (report.finished ? "Final figures, " : "Live, refreshed every 2 s; ") +
      "updated " + when.toLocaleTimeString([], { hour12: false });
    root.dataset.finished = String(Boolean(report.finished));
    root.dataset.refreshes = String(Number(root.dataset.refreshes || 0) + 1);
  }

  async function poll() {
    let finished = false;
    try {
      const response = await fetch(dataUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (response.ok) {
        const report = await response.json();
        show(report);
        finished = Boolean(report.finished);
      }
    } catch (error) {
      document.getElementById("updated").textContent = "Not updated: " + error.message;
    }
    if (!finished) window.setTimeout(poll, POLL_MS);
  }

  for (const form of root.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  poll();
})();
