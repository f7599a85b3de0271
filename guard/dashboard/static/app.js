// guard dashboard: draws the view embedded in the page, then keeps "going on now" fresh when served.
(function () {
  "use strict";
  const view = JSON.parse(document.getElementById("guard-view").textContent);
  const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2",
                   "#65a30d", "#9ca3af"];
  Chart.defaults.animation = false;  // first paint is the figure that matters
  Chart.defaults.maintainAspectRatio = false;
  const charts = {};
  window.guardCharts = charts;

  const usd = (v) => v == null ? "-" : (v >= 0.01 || v === 0 ? "$" + v.toFixed(2) : "$" + v.toFixed(4));
  const pct = (v) => (v * 100).toFixed(1) + "%";
  const text = (id, value) => { document.getElementById(id).textContent = value; };

  function rows(tableId, items, cells) {
    const body = document.querySelector("#" + tableId + " tbody");
    body.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      for (const [value, cls] of cells(item)) {
        const td = document.createElement("td");
        td.textContent = value;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function chart(id, config) {
    charts[id] = new Chart(document.getElementById(id), config);
  }

  function totals(report) {
    const t = report.totals;
    text("period", report.period.label + " (" + report.period.timezone + ")");
    text("generated", "as of " + view.generated_at + " from " + view.ledger);
    text("total-spend", usd(t.spend_usd));
    text("total-runs", String(t.runs));
    text("total-developers", String(t.developers));
    text("run-percentiles", usd(t.p50_usd) + " / " + usd(t.p90_usd));
    text("exhaustion-rate", pct(t.exhaustion_rate));
    const band = t.runs === 0 ? ["", ""] : t.exhaustion_rate < view.bands.low ? ["below 2%: ceilings are theatre", "band-low"]
      : t.exhaustion_rate > view.bands.high ? ["above 20%: ceilings too tight", "band-high"] : ["within 2%-20%", "band-ok"];
    const el = document.getElementById("exhaustion-band");
    el.textContent = band[0];
    el.className = band[1];
    text("team-median", usd(report.team_median_usd));
  }

  function tables(report) {
    rows("developers", report.groups, (g) => [[g.key], [usd(g.spend_usd), "num"], [String(g.runs), "num"],
      [String(g.halted_runs), "num"], [g.vs_team_median == null ? "-" : g.vs_team_median.toFixed(2) + "x", "num"]]);
    rows("top-tasks", view.top_tasks, (g) => [[g.key], [usd(g.spend_usd), "num"], [String(g.runs), "num"]]);
    rows("top-runs", report.top_runs, (r) => [[r.id], [r.developer], [r.task], [usd(r.cost_usd), "num"],
      [r.status + (r.halt_ceiling ? " (" + r.halt_ceiling + ")" : "")]]);
  }

  function live(runs) {
    rows("live-runs", runs, (r) => [[r.id], [r.developer], [r.tool], [r.task], [r.status, r.status === "paused" ? "paused" : ""],
      [usd(r.spend_usd), "num"], [usd(r.budget_usd), "num"], [usd(r.remaining_usd), "num"]]);
    document.getElementById("live-empty").hidden = runs.length > 0;
  }

  // the 2% and 20% bands, drawn across the plot whatever the number of days
  const bandLines = {
    id: "guardBands",
    afterDatasetsDraw(c) {
      const y = c.scales.y, area = c.chartArea, ctx = c.ctx;
      ctx.save();
      ctx.setLineDash([6, 4]);
      ctx.font = "11px system-ui, sans-serif";
      for (const [v, color, label] of [[view.bands.low, "#b45309", "2%: below, ceilings are theatre"],
                                       [view.bands.high, "#b91c1c", "20%: above, ceilings too tight"]]) {
        const py = y.getPixelForValue(v * 100);
        ctx.strokeStyle = color;
        ctx.fillStyle = color;
        ctx.beginPath();
        ctx.moveTo(area.left, py);
        ctx.lineTo(area.right, py);
        ctx.stroke();
        ctx.fillText(label, area.left + 4, py - 3);
      }
      ctx.restore();
    },
  };

  function charts_() {
    const report = view.report;
    const devs = Object.keys(view.spend_by_developer_day);
    // stacked bars: readable on the 1st of the month (one day) as on the 31st
    chart("chart-developer-time", {
      type: "bar",
      data: { labels: view.days, datasets: devs.map((d, i) => ({ label: d, data: view.spend_by_developer_day[d],
        backgroundColor: PALETTE[i % PALETTE.length] })) },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "USD" } } } },
    });
    const h = view.task_costs;
    chart("chart-task-costs", {
      type: "bar",
      data: { labels: h.counts.map((_, i) => usd(h.edges[i]) + "-" + usd(h.edges[i + 1])),
        datasets: [{ label: "tasks (p50 " + usd(h.p50) + ", p90 " + usd(h.p90) + ")", data: h.counts, backgroundColor: PALETTE[0] }] },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "tasks" } } } },
    });
    chart("chart-exhaustion", {
      type: "bar",
      data: { labels: view.days, datasets: [
        { label: "runs halted by a ceiling, % of the day's runs", data: view.exhaustion_by_day.map((v) => v == null ? null : v * 100),
          backgroundColor: PALETTE[1] }] },
      options: { scales: { y: { beginAtZero: true, suggestedMax: view.bands.high * 100 * 1.25,
        title: { display: true, text: "% of runs halted" } } } },
      plugins: [bandLines],
    });
    chart("chart-developer-median", {
      type: "bar",
      data: { labels: report.groups.map((g) => g.key), datasets: [
        { type: "bar", label: "spend", data: report.groups.map((g) => g.spend_usd), backgroundColor: PALETTE[0] },
        { type: "line", label: "team median", data: report.groups.map(() => report.team_median_usd),
          borderColor: PALETTE[1], pointRadius: 0 }] },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "USD" } } } },
    });
    for (const [id, groups] of [["chart-model", view.by_model], ["chart-tool", view.by_tool]]) {
      chart(id, {
        type: "doughnut",
        data: { labels: groups.map((g) => g.key), datasets: [{ data: groups.map((g) => g.spend_usd),
          backgroundColor: groups.map((_, i) => PALETTE[i % PALETTE.length]) }] },
        options: { plugins: { legend: { position: "right" } } },
      });
    }
  }

  totals(view.report);
  tables(view.report);
  live(view.live);
  charts_();
  performance.mark("guard-charts-drawn");
  window.guardReady = true;

  // served (not a file): refresh what is going on now
  if (location.protocol.startsWith("http")) {
    setInterval(() => {
      fetch("api/live", { credentials: "same-origin" }).then((r) => r.ok ? r.json() : null)
        .then((runs) => { if (runs) live(runs); }).catch(() => {});
    }, 5000);
  }
})();
