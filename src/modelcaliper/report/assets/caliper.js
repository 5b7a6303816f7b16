/* modelcaliper charts: draws every element with a data-chart attribute from the page's JSON.
 * The data comes from <script type="application/json" id="caliper-data">; text only ever
 * reaches the page through textContent (uPlot does the same for its legends and titles).
 * Each drawn chart is kept in window.caliper.charts[id] = {kind, plot, points}, where points
 * is the number of data points (or bars) drawn, for tests and for debugging.
 */
(function () {
  "use strict";
  var COLORS = ["#2e90fa", "#f04438", "#12b76a", "#f79009", "#7f56d9", "#667085"];
  var BINS_PER_DECADE = 20;
  var NINES = ["p0", "p90", "p99", "p99.9", "p99.99"];
  var HEIGHT = 240;

  var source = document.getElementById("caliper-data");
  var DATA = source ? JSON.parse(source.textContent || "null") || {} : {};
  var state = { data: DATA, charts: {}, failed: [] };
  window.caliper = state;

  function fmtMs(v) {
    if (v == null || !isFinite(v)) return "";
    var a = Math.abs(v);
    if (a >= 1000) return (v / 1000).toPrecision(3).replace(/\.?0+$/, "") + " s";
    if (a >= 100) return v.toFixed(0) + " ms";
    if (a >= 1) return (+v.toPrecision(3)) + " ms";
    if (a >= 0.001) return (+(v * 1000).toPrecision(3)) + " µs";
    return v === 0 ? "0" : v.toExponential(1) + " ms";
  }

  function binMs(bin) { return Math.pow(10, bin / BINS_PER_DECADE) / 1000; }
  function msBin(ms) { return Math.log10(ms * 1000) * BINS_PER_DECADE; }
  function binRange(x) { return fmtMs(binMs(x - 0.5)) + " – " + fmtMs(binMs(x + 0.5)); }
  function ninesName(n) { return "p" + (+(100 * (1 - Math.pow(10, -n))).toFixed(4)); }

  /* Ticks at decades of the bin grid (or half decades when the range is narrow). */
  function binSplits(u, axisIdx, min, max) {
    var step = (max - min) > 2 * BINS_PER_DECADE ? BINS_PER_DECADE : BINS_PER_DECADE / 4;
    var out = [];
    for (var v = Math.ceil(min / step) * step; v <= max; v += step) out.push(v);
    return out;
  }

  function width(el) { return Math.max(el.clientWidth || 0, 280); }

  function baseOpts(el, series, extra, xLabel, xValue) {
    var opts = {
      width: width(el), height: HEIGHT,
      series: [{ label: xLabel || "", value: function (u, v) { return v == null ? "–" : (xValue ? xValue(v) : String(v)); } }].concat(series),
      scales: { x: { time: false } }, legend: { show: true },
      cursor: { drag: { x: true, y: false } },
      axes: [{}, { size: 60 }]
    };
    for (var key in extra) opts[key] = extra[key];
    return opts;
  }

  function line(label, i, dash) {
    var s = { label: label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false } };
    if (dash) s.dash = [6, 4];
    return s;
  }

  function deadlineHook(xOf, yOf) {
    return function (u) {
      var ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = "#c4320a";
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5 * (window.devicePixelRatio || 1);
      ctx.beginPath();
      if (xOf != null) {
        var x = u.valToPos(xOf, "x", true);
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
      } else {
        var y = u.valToPos(yOf, "y", true);
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
      }
      ctx.stroke();
      ctx.restore();
    };
  }

  function view(el) { return (DATA.views || {})[el.getAttribute("data-view")]; }

  /* One bar per non-empty bin; empty bins between them are null so bars keep one bin's width. */
  function histogram(el) {
    var v = view(el), dist = v.latency[el.getAttribute("data-series")], bins = dist.bins;
    var first = bins.bin[0], last = bins.bin[bins.bin.length - 1];
    var xs = [], ys = [];
    for (var b = first; b <= last; b++) { xs.push(b + 0.5); ys.push(null); }
    for (var i = 0; i < bins.bin.length; i++) ys[bins.bin[i] - first] = bins.count[i];
    var deadline = el.getAttribute("data-series") === "queries" ? v.deadline_ms : null;
    var lo = first, hi = last + 1;
    if (deadline) { lo = Math.min(lo, Math.floor(msBin(deadline)) - 1); hi = Math.max(hi, Math.ceil(msBin(deadline)) + 1); }
    var opts = baseOpts(el, [{ label: el.getAttribute("data-series"), fill: COLORS[0] + "cc", stroke: COLORS[0], width: 0,
      paths: uPlot.paths.bars({ size: [1, Infinity], align: 0 }), points: { show: false } }], {
      scales: { x: { time: false, range: [lo, hi] }, y: { range: function (u, mn, mx) { return [0, mx * 1.05 || 1]; } } },
      axes: [{ splits: binSplits, values: function (u, vals) { return vals.map(function (x) { return fmtMs(binMs(x)); }); } },
             { size: 60 }]
    }, "bin", binRange);
    if (deadline) opts.hooks = { draw: [deadlineHook(msBin(deadline), null)] };
    return { plot: new uPlot(opts, [xs, ys], el), points: bins.bin.length };
  }

  function ninesAxis() {
    return { splits: function () { return [0, 1, 2, 3, 4]; },
             values: function (u, vals) { return vals.map(function (x) { return NINES[Math.round(x)] || ""; }); } };
  }

  function positive(values) { return values.map(function (y) { return y > 0 ? y : null; }); }

  function percentiles(el) {
    var v = view(el), series = el.getAttribute("data-series"), curve = v.latency[series].curve;
    var data = [curve.nines, positive(curve.ms)];
    var lines = [line(series, 0)];
    var deadline = series === "queries" ? v.deadline_ms : null;
    if (deadline) {
      lines.push({ label: "deadline", stroke: "#c4320a", dash: [5, 4], width: 1.5, points: { show: false } });
      data.push(curve.nines.map(function () { return deadline; }));
    }
    var opts = baseOpts(el, lines, {
      scales: { x: { time: false, range: [0, 4] }, y: { distr: 3, log: 10 } },
      axes: [ninesAxis(), { size: 60, values: function (u, vals) { return vals.map(fmtMs); } }]
    }, "percentile", ninesName);
    return { plot: new uPlot(opts, data, el), points: curve.nines.length };
  }

  function overTime(el, keys, labels, yFmt) {
    var iv = view(el).intervals;
    var data = [iv.start_s].concat(keys.map(function (k) { return iv[k]; }));
    var opts = baseOpts(el, keys.map(function (k, i) { return line(labels[i], i); }), {
      axes: [{ values: function (u, vals) { return vals.map(function (x) { return x + " s"; }); } },
             { size: 60, values: yFmt ? function (u, vals) { return vals.map(yFmt); } : undefined }]
    }, "second", function (x) { return x + " s"; });
    return { plot: new uPlot(opts, data, el), points: iv.start_s.length };
  }

  function compareSeries(el) { return DATA.compare.series[el.getAttribute("data-series")]; }

  function runLabel(i) {
    var r = DATA.compare.runs[i];
    return (i === 0 ? "baseline " : "") + r.run_id;
  }

  function comparePercentiles(el) {
    var curves = compareSeries(el).curves, xs = null, data = [], lines = [];
    curves.forEach(function (c, i) {
      if (!c) return;
      xs = xs || c.nines;
      data.push(positive(c.ms));
      lines.push(line(runLabel(i), i));
    });
    var opts = baseOpts(el, lines, {
      scales: { x: { time: false, range: [0, 4] }, y: { distr: 3, log: 10 } },
      axes: [ninesAxis(), { size: 60, values: function (u, vals) { return vals.map(fmtMs); } }]
    }, "percentile", ninesName);
    return { plot: new uPlot(opts, [xs].concat(data), el), points: xs.length };
  }

  function compareHistogram(el) {
    var bins = compareSeries(el).bins, first = bins.bin[0], last = bins.bin[bins.bin.length - 1];
    var xs = [];
    for (var b = first; b <= last; b++) xs.push(b + 0.5);
    var data = [xs], lines = [];
    bins.fraction.forEach(function (row, i) {
      var ys = xs.map(function () { return 0; });
      for (var j = 0; j < bins.bin.length; j++) ys[bins.bin[j] - first] = row[j];
      data.push(ys);
      lines.push({ label: runLabel(i), stroke: COLORS[i % COLORS.length], width: 1.5,
        paths: uPlot.paths.stepped({ align: 0 }), points: { show: false } });
    });
    var opts = baseOpts(el, lines, {
      scales: { x: { time: false, range: [first, last + 1] } },
      axes: [{ splits: binSplits, values: function (u, vals) { return vals.map(function (x) { return fmtMs(binMs(x)); }); } },
             { size: 60, values: function (u, vals) { return vals.map(function (y) { return (y * 100).toFixed(1) + "%"; }); } }]
    }, "bin", binRange);
    return { plot: new uPlot(opts, data, el), points: bins.bin.length };
  }

  function serverCdf(el) {
    var chart = view(el).server.charts[+el.getAttribute("data-index")];
    var keep = [];
    chart.le.forEach(function (x, i) { if (x > 0) keep.push(i); });
    var pick = function (arr) { return keep.map(function (i) { return arr[i]; }); };
    var data = [pick(chart.le), pick(chart.server_share)], lines = [line("server", 0)];
    if (chart.client_share) { data.push(pick(chart.client_share)); lines.push(line("client", 1)); }
    var opts = baseOpts(el, lines, {
      scales: { x: { time: false, distr: 3, log: 10 }, y: { range: [0, 1] } },
      axes: [{ values: function (u, vals) { return vals.map(chart.unit === "ms" ? fmtMs : String); } },
             { size: 60, values: function (u, vals) { return vals.map(function (y) { return Math.round(y * 100) + "%"; }); } }]
    }, "at or below", chart.unit === "ms" ? fmtMs : String);
    return { plot: new uPlot(opts, data, el), points: keep.length };
  }

  var KINDS = {
    "histogram": histogram,
    "percentiles": percentiles,
    "rate": function (el) { return overTime(el, ["rate_per_s"], ["requests/s"]); },
    "latency-time": function (el) { return overTime(el, ["p50_ms", "p99_ms"], ["p50", "p99"], fmtMs); },
    "errors-time": function (el) { return overTime(el, ["errors", "timeouts"], ["errors", "timeouts"]); },
    "lag-time": function (el) { return overTime(el, ["lag_p99_ms", "lag_max_ms"], ["lag p99", "lag max"], fmtMs); },
    "compare-percentiles": comparePercentiles,
    "compare-histogram": compareHistogram,
    "server-cdf": serverCdf
  };
  /* Other scripts (sweep.js) add their chart kinds here before the page has loaded. */
  state.kinds = KINDS;
  state.lib = { COLORS: COLORS, HEIGHT: HEIGHT, fmtMs: fmtMs, baseOpts: baseOpts, line: line,
                deadlineHook: deadlineHook, width: width };

  function drawAll() {
    var els = document.querySelectorAll("[data-chart]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i], kind = el.getAttribute("data-chart");
      try {
        var drawn = KINDS[kind](el);
        state.charts[el.id] = { kind: kind, plot: drawn.plot, points: drawn.points };
        el.setAttribute("data-points", String(drawn.points));
      } catch (err) {
        state.failed.push(el.id);
        var note = document.createElement("p");
        note.className = "chart-error";
        note.textContent = "chart could not be drawn: " + err;
        el.appendChild(note);
        console.error("caliper chart " + el.id + ": " + err);
      }
    }
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        for (var id in state.charts) {
          var el = document.getElementById(id);
          state.charts[id].plot.setSize({ width: width(el), height: HEIGHT });
        }
      }, 100);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
