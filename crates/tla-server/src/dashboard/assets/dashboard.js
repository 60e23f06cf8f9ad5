// TLA dashboard: draws a campaign's charts from /campaigns/{id}/series.json (uPlot)
// and keeps its live figures current from /campaigns/{id}/live (server-sent events).
// Plain JavaScript, no build step; see docs/dashboard.md.
(function () {
  "use strict";
  var root = document.getElementById("campaign");
  if (!root) { return; }
  var base = "/campaigns/" + encodeURIComponent(root.dataset.id);
  var palette = ["#1c7ed6", "#f08c00", "#2f9e44", "#e03131", "#7048e8", "#0c8599",
    "#d6336c", "#5c940d", "#862e9c", "#495057"];
  var charts = [];
  var drawnSeq = null;
  var loading = false;

  function num(x) {
    if (!isFinite(x)) { return "\u2013"; }
    var a = Math.abs(x);
    if (a >= 1000) { return Math.round(x).toLocaleString("en-US"); }
    if (a >= 1 || a === 0) { return x.toFixed(2); }
    return x.toFixed(4);
  }

  function markerColor(kind) {
    if (kind === "revision") { return "#7048e8"; }
    if (kind === "budget") { return "#e8590c"; }
    return "#c92a2a";
  }

  function markerLabel(kind) {
    if (kind === "revision") { return "R"; }
    if (kind === "budget") { return "B"; }
    return kind;
  }

  // Draws revisions, controls and budget changes as dashed vertical lines.
  function markersPlugin(markers) {
    return {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.setLineDash([4, 4]);
          ctx.font = "11px sans-serif";
          markers.forEach(function (m) {
            var x = u.valToPos(m.at / 1000, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
            ctx.strokeStyle = markerColor(m.kind);
            ctx.fillStyle = ctx.strokeStyle;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillText(markerLabel(m.kind), x + 3, u.bbox.top + 12);
          });
          ctx.restore();
        }]
      }
    };
  }

  function width(el) { return Math.max(320, Math.min(1100, el.clientWidth || 800)); }

  function plot(el, title, series, data, markers, yLabel) {
    var opts = {
      title: title,
      width: width(el),
      height: 220,
      series: [{}].concat(series),
      axes: [{}, { label: yLabel }],
      plugins: [markersPlugin(markers)]
    };
    var holder = document.createElement("div");
    el.appendChild(holder);
    charts.push(new uPlot(opts, data, holder));
  }

  // One stacked chart per component: each option's share of the impressions per
  // bucket. Series are drawn from the top of the stack down, each filled to zero, so
  // every band shows between its line and the one below it.
  function allocation(el, s) {
    s.components.forEach(function (c) {
      var n = s.t.length;
      var totals = new Array(n).fill(0);
      c.impressions.forEach(function (col) { col.forEach(function (v, b) { totals[b] += v; }); });
      var stacked = [];
      var running = new Array(n).fill(0);
      c.impressions.forEach(function (col) {
        running = running.map(function (r, b) { return r + (totals[b] > 0 ? col[b] / totals[b] : 0); });
        stacked.push(running.slice());
      });
      var series = [];
      var data = [s.t];
      for (var k = c.options.length - 1; k >= 0; k--) {
        var color = palette[k % palette.length];
        series.push({ label: c.options[k], stroke: color, fill: color + "99", points: { show: false } });
        data.push(stacked[k]);
      }
      plot(el, c.component, series, data, s.markers, "share");
    });
  }

  function cumulative(el, s) {
    var even = parseFloat(root.dataset.evenSplit);
    var impressions = 0, raised = 0, heldImpr = 0, heldRaised = 0;
    var realized = [], evenLine = [], holdLine = [];
    s.t.forEach(function (_, b) {
      impressions += s.total.impressions[b] + s.held_out.impressions[b];
      raised += s.total.raised[b] + s.held_out.raised[b];
      heldImpr += s.held_out.impressions[b];
      heldRaised += s.held_out.raised[b];
      realized.push(raised);
      evenLine.push(isFinite(even) ? even * impressions : null);
      holdLine.push(heldImpr > 0 ? heldRaised / heldImpr * impressions : null);
    });
    root.dataset.chartImpressions = String(impressions);
    plot(el, "Cumulative value", [
      { label: "raised", stroke: "#2f9e44", width: 2 },
      { label: "even split (estimate)", stroke: "#868e96", dash: [6, 4] },
      { label: "holdout rate", stroke: "#e8590c", dash: [2, 3] }
    ], [s.t, realized, evenLine, holdLine], s.markers, "value");
  }

  function draw(s) {
    charts.forEach(function (u) { u.destroy(); });
    charts = [];
    var alloc = document.getElementById("allocation");
    var cum = document.getElementById("cumulative");
    alloc.textContent = "";
    cum.textContent = "";
    if (s.t.length === 0) {
      alloc.textContent = "No events learned yet.";
      root.dataset.chartImpressions = "0";
      return;
    }
    allocation(alloc, s);
    cumulative(cum, s);
  }

  function load(seq) {
    if (loading) { return; }
    loading = true;
    fetch(base + "/series.json", { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("series.json answered " + r.status); }
        return r.json();
      })
      .then(function (s) { draw(s); drawnSeq = seq; root.dataset.chartSeq = String(seq); })
      .catch(function (e) { root.dataset.chartError = String(e); })
      .then(function () { loading = false; });
  }

  function live() {
    var source = new EventSource(base + "/live");
    source.addEventListener("figures", function (message) {
      var f = JSON.parse(message.data);
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var v = f[el.dataset.live];
        if (v === undefined) { return; }
        el.textContent = typeof v !== "number" ? String(v)
          : Number.isInteger(v) ? v.toLocaleString("en-US") : num(v);
      });
      root.dataset.liveSeq = String(f.applied_seq);
      if (f.applied_seq !== drawnSeq) { load(f.applied_seq); }
    });
  }

  function start() {
    if (typeof uPlot === "undefined") {
      root.dataset.chartError = "uPlot did not load";
      return;
    }
    live();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
