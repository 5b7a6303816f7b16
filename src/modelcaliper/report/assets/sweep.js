/* modelcaliper sweep charts: the chart kinds of the Sweep view, added to caliper.js's set.
 * Data: DATA.sweep (report/sweep.py). Loaded after caliper.js and before the page has
 * loaded, so caliper.js draws these charts with its own. Text reaches the page only through
 * uPlot (labels, legends) or textContent.
 */
(function () {
  "use strict";
  var state = window.caliper;
  if (!state || !state.kinds) return;
  var lib = state.lib;

  function sweep() { return state.data.sweep; }
  function color(i) { return lib.COLORS[i % lib.COLORS.length]; }
  function present(values) { return values.filter(function (v) { return v != null; }).length; }
  function fmtNumber(v) {
    if (v == null || !isFinite(v)) return "";
    return Math.abs(v) >= 100 ? v.toFixed(0) : String(+v.toPrecision(3));
  }

  /* Horizontal dashed lines at each SLO threshold (ms). */
  function sloHook(thresholds) {
    var hooks = thresholds.map(function (ms) { return lib.deadlineHook(null, ms); });
    return function (u) { hooks.forEach(function (h) { h(u); }); };
  }

  /* A log-scale range covering the data and the SLO lines, with some room. */
  function logRange(extra) {
    return function (u, min, max) {
      var lo = min, hi = max;
      extra.forEach(function (v) { lo = lo == null ? v : Math.min(lo, v); hi = hi == null ? v : Math.max(hi, v); });
      if (lo == null || !(lo > 0)) lo = 0.001;
      if (hi == null || !(hi > lo)) hi = lo * 10;
      return [lo / 1.5, hi * 1.5];
    };
  }

  /* p50 (dashed) and p99 against batch size, one colour per wire (and rate). */
  function batch(el) {
    var view = sweep(), chart = view.batch, xs = chart.batch_sizes;
    var slo = view.slo_lines.filter(function (s) { return s.metric === "p50" || s.metric === "p99"; })
      .map(function (s) { return s.threshold_ms; });
    var series = chart.series.map(function (s) {
      var drawn = lib.line(s.label, s.group, s.percentile === "p50");
      drawn.points = { show: true, size: 6 };
      drawn.spanGaps = true;
      return drawn;
    });
    var opts = lib.baseOpts(el, series, {
      scales: { x: { time: false, distr: 3, log: 10, range: function () { return [xs[0] / 1.25, xs[xs.length - 1] * 1.25]; } },
                y: { distr: 3, log: 10, range: logRange(slo) } },
      // every batch size gets its tick and label (a log axis labels only decades by default)
      axes: [{ splits: function () { return xs; }, filter: function (u, splits) { return splits; },
               values: function (u, vals) { return vals.map(String); } },
             { size: 60, values: function (u, vals) { return vals.map(lib.fmtMs); } }]
    }, "batch", String);
    opts.hooks = { draw: [sloHook(slo)] };
    var data = [xs].concat(chart.series.map(function (s) { return s.values; }));
    var points = chart.series.reduce(function (n, s) { return n + present(s.values); }, 0);
    return { plot: new uPlot(opts, data, el), points: points };
  }

  /* A filled dot at every (x, y) point of every series: uPlot's mode 2 draws lines only. */
  function markerHook(colors) {
    return function (u) {
      var ctx = u.ctx, r = 4 * (window.devicePixelRatio || 1);
      ctx.save();
      for (var s = 1; s < u.data.length; s++) {
        var xs = u.data[s][0], ys = u.data[s][1];
        ctx.fillStyle = colors[s - 1];
        for (var i = 0; i < xs.length; i++) {
          ctx.beginPath();
          ctx.arc(u.valToPos(xs[i], "x", true), u.valToPos(ys[i], "y", true), r, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      ctx.restore();
    };
  }

  /* Watched latency against achieved throughput: each configuration its own (x, y) points,
   * so uPlot's mode 2, where every series carries its own x values. */
  function curves(el) {
    var view = sweep(), shown = view.curves.series.filter(function (s) { return s.points > 0; });
    var slo = view.watch_slo_ms != null ? [view.watch_slo_ms] : [];
    var data = [null], series = [{}];
    shown.forEach(function (s) {
      data.push([s.throughput, s.latency_ms]);
      series.push({ label: s.label, stroke: color(s.index), width: 1.5,
        facets: [{ scale: "x", auto: true }, { scale: "y", auto: true }],
        paths: uPlot.paths.linear(), points: { show: false } });
    });
    var opts = {
      mode: 2, width: lib.width(el), height: lib.HEIGHT, series: series,
      legend: { show: true, live: false },
      cursor: { show: false },
      scales: { x: { time: false, range: function (u, min, max) { return [0, (max || 1) * 1.1]; } },
                y: { distr: 3, log: 10, range: logRange(slo) } },
      axes: [{ values: function (u, vals) { return vals.map(fmtNumber); } },
             { size: 60, values: function (u, vals) { return vals.map(lib.fmtMs); } }],
      hooks: { draw: [sloHook(slo), markerHook(shown.map(function (s) { return color(s.index); }))] }
    };
    var points = shown.reduce(function (n, s) { return n + s.points; }, 0);
    return { plot: new uPlot(opts, data, el), points: points };
  }

  /* One bar per configuration: request bytes, or client CPU per candidate with the encoding
   * share drawn over the total. */
  function bars(el) {
    var view = sweep().bars, metric = el.getAttribute("data-metric"), labels = view.labels;
    var xs = labels.map(function (l, i) { return i; });
    var columns = metric === "cpu" ? [["client CPU µs per candidate", view.cpu_total], ["encode", view.cpu_encode]]
      : [[(view.bytes_per === "candidate" ? "request bytes per candidate" : "request bytes"), view.bytes]];
    var series = columns.map(function (c, i) {
      return { label: c[0], fill: color(i) + "cc", stroke: color(i), width: 0,
        paths: uPlot.paths.bars({ size: [i === 0 ? 0.6 : 0.36, 120], align: 0 }), points: { show: false } };
    });
    var opts = lib.baseOpts(el, series, {
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] },
                y: { range: function (u, mn, mx) { return [0, (mx || 1) * 1.1]; } } },
      axes: [{ splits: function () { return xs; }, size: 110, rotate: -25,
               values: function (u, vals) { return vals.map(function (x) { return labels[x] == null ? "" : labels[x]; }); } },
             { size: 60, values: function (u, vals) { return vals.map(fmtNumber); } }]
    }, "configuration", function (x) { return labels[x] == null ? "" : labels[x]; });
    var data = [xs].concat(columns.map(function (c) { return c[1]; }));
    return { plot: new uPlot(opts, data, el), points: present(columns[0][1]) };
  }

  state.kinds["sweep-batch"] = batch;
  state.kinds["sweep-curves"] = curves;
  state.kinds["sweep-bars"] = bars;
})();
