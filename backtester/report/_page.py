"""The page's style sheet and its one script, both inlined into report.html.

The script only adds zoom to the time charts (``svg.zoom``): drag across a chart to zoom
into that stretch, Shift + wheel to zoom around the pointer, a sideways wheel or swipe to
pan a zoomed chart, double-click to reset. It narrows the viewBox of the chart's inner
``svg.plot`` (so the y axis stays), counter-scales the ``.fix`` shapes so markers keep their
form, and rewrites the time axis for the visible stretch. With scripts off the page is
complete; only the zoom hint, shown by the script, is missing.
"""

from __future__ import annotations

CSS = """
:root{--ink:#1d232a;--muted:#5f6b76;--line:#d9dee3;--bg:#f6f7f9;--pos:#137333;--neg:#b3261e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
nav{position:sticky;top:0;z-index:3;background:#1d232a;padding:6px 24px}
nav a{color:#e8edf2;text-decoration:none;margin-right:16px;font-size:13px;white-space:nowrap}
nav a:hover{text-decoration:underline}
main{max-width:1320px;margin:0 auto;padding:8px 20px 48px}
header,section{background:#fff;border:1px solid var(--line);border-radius:8px;
padding:14px 18px;margin:16px 0}
h1{font-size:20px;margin:0 0 8px;overflow-wrap:anywhere}h2{font-size:17px;margin:0 0 10px}
h3{font-size:14px;margin:18px 0 6px;color:var(--muted)}
.run-id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0 0 12px}
.facts dt{color:var(--muted)}.facts dd{margin:0;overflow-wrap:anywhere}
.facts.figures{margin:8px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px;background:#fbfcfd}
.card .label{color:var(--muted);font-size:12px}
.card .value{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
.verdict{font-size:15px;margin:12px 0 0;padding:8px 12px;border-left:4px solid #1f5fa8;
background:#f3f7fc}
.pos{color:var(--pos)}.neg{color:var(--neg)}
.scroll{overflow:auto;max-height:640px;border:1px solid var(--line);border-radius:6px}
.scroll.full{max-height:none}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:4px 7px;border-bottom:1px solid #eef0f3;white-space:nowrap}
thead th{position:sticky;top:0;background:#eef1f4;text-align:right;font-weight:600;z-index:1;
white-space:normal;vertical-align:bottom}
thead th:first-child,tbody th,tfoot th{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
tbody tr:hover{background:#eef5ff}
tbody th,tfoot th{font-weight:600}
tfoot td,tfoot th{border-top:2px solid var(--line);font-weight:600;background:#f3f5f7}
td.when{white-space:normal;min-width:6.6em}
table.numbers td{text-align:right}
table.numbers td.text,table.regime-weights thead th:nth-child(2),
table.book-regimes thead th:nth-child(2){text-align:left}
table.wrap td,table.wrap th{white-space:normal}
table.chunks{font-size:12px}table.chunks th,table.chunks td{padding:4px 5px}
table.book-regimes th.book{vertical-align:top;background:#fff;width:22%;white-space:normal}
table.book-regimes tr.first>*{border-top:2px solid var(--line)}
table.heatmap td,table.heatmap thead th{text-align:center;min-width:4.6em}
table.heatmap thead th:first-child{text-align:left}
table.attribution thead th:nth-child(4){text-align:left}
table.heatmap td.year{font-weight:600;border-left:2px solid var(--line)}
table.trades{font-size:12px}table.trades th,table.trades td{padding:3px 5px}
table.trades td{text-align:right}
table.trades td:nth-child(-n+5),table.trades td:nth-child(n+12),
table.trades thead th:nth-child(-n+5),table.trades thead th:nth-child(n+12){text-align:left}
table.trades td:nth-child(4),table.trades td:nth-child(5){white-space:normal;min-width:6.6em}
table.trades td.id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:11px;white-space:normal;overflow-wrap:anywhere;min-width:10ch;color:var(--muted)}
table.trades tbody th{color:var(--muted);font-weight:400}
tr.learned>*{font-weight:600}tr.best>*{background:#f1f8f3}
.tag{font-size:11px;color:var(--muted);font-weight:400;border:1px solid var(--line);
border-radius:3px;padding:0 4px;margin-left:4px}
tr.gap td{text-align:center;color:var(--muted);background:#f3f5f7}
.chart{width:100%;height:auto;display:block;margin:4px 0}
.chart .grid{stroke:#e6e9ed;stroke-width:1}.chart .grid.zero{stroke:#5f6b76}
.chart .tick{fill:var(--muted);font-size:11px}
.chart .plot *{vector-effect:non-scaling-stroke}
.chart .line{fill:none;stroke:#1f5fa8;stroke-width:1.4;stroke-linejoin:round}
.chart .line.price{stroke:#7b8794;stroke-width:1.1}
.chart .series{fill:none;stroke-linejoin:round}
.chart .area{fill:rgba(179,38,30,.22);stroke:none}
.chart .area-line{fill:none;stroke:var(--neg);stroke-width:1.2}
.chart .reference{stroke:#9aa5b1;stroke-dasharray:4 3}
.chart .band{fill:#fff}.chart .band.odd{fill:#f1f4f8}
.chart .band:hover{fill:#e3ecf7}
.chart .boundary{stroke:#b8c1cb;stroke-dasharray:3 3}
.chart .band-label{fill:var(--muted);font-size:11px}
.chart .marker{stroke-width:.8}.chart .marker:hover{stroke:#000;stroke-width:2}
.chart .marker.long{fill:var(--pos);stroke:#fff}.chart .marker.short{fill:var(--neg);stroke:#fff}
.chart .marker.exit{fill:#fff;fill-opacity:.7;stroke:#1d232a;stroke-width:1.2}
.chart .bin.loss{fill:rgba(179,38,30,.72)}.chart .bin.gain{fill:rgba(19,115,51,.72)}
.chart .bin.mixed{fill:#9aa5b1}.chart .bin:hover{fill-opacity:.5}
.chart .selection{fill:rgba(31,95,168,.14);stroke:#1f5fa8;stroke-width:1}
.js .chart.zoom{cursor:crosshair;touch-action:pan-y}
.chart-title{font-size:12px;font-weight:600;margin:10px 0 0}
.symbol-chart{margin-bottom:14px}
.key{white-space:nowrap}.key.long{color:var(--pos)}.key.short{color:var(--neg)}
.legend span{margin-right:16px;font-size:12px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.zoom-hint{display:none}.js .zoom-hint{display:block}
.note{color:var(--muted);font-size:12px;margin:6px 0}
.absent{color:var(--muted);font-style:italic}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:10px;
font-size:12px;margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
@media (max-width:900px){main{padding:8px 8px 32px}header,section{padding:10px}
table,table.chunks,table.trades{font-size:11px}
th,td,table.chunks th,table.chunks td,table.trades th,table.trades td{padding:3px 2px}
table.chunks{font-size:10.5px}td.when{min-width:6.2em}table.trades td.id{min-width:6ch;font-size:10px}
table.trades td:nth-child(4),table.trades td:nth-child(5){min-width:6.1em}
table.heatmap td{min-width:0}.chart .tick,.chart .band-label{font-size:15px}
.cards{grid-template-columns:repeat(auto-fill,minmax(120px,1fr))}.card .value{font-size:17px}}
"""

SCRIPT = r"""
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function stamp(t, kind) {
    var d = new Date(t), y = d.getUTCFullYear(), m = pad(d.getUTCMonth() + 1);
    if (kind === "y") { return String(y); }
    if (kind === "m") { return y + "-" + m; }
    if (kind === "d") { return y + "-" + m + "-" + pad(d.getUTCDate()); }
    return m + "-" + pad(d.getUTCDate()) + " " + pad(d.getUTCHours()) + ":" +
      pad(d.getUTCMinutes());
  }
  function ticks(a, b) {
    var fixed = [[3e5, "h"], [9e5, "h"], [36e5, "h"], [216e5, "h"], [864e5, "d"],
      [6048e5, "d"]], out = [], i, t, step, k;
    for (i = 0; i < fixed.length; i++) {
      step = fixed[i][0];
      if ((b - a) / step <= 8) {
        for (t = Math.ceil(a / step) * step; t <= b; t += step) {
          out.push([t, stamp(t, fixed[i][1])]);
        }
        return out;
      }
    }
    var months = [1, 3, 12, 24, 60, 120], d = new Date(a);
    for (i = 0; i < months.length; i++) {
      k = months[i];
      if ((b - a) / (k * 2.63e9) > 8 && i < months.length - 1) { continue; }
      var y = d.getUTCFullYear(), m = d.getUTCMonth();
      if (Date.UTC(y, m, 1) < a) { m += 1; }
      m = Math.ceil(m / k) * k;
      for (t = Date.UTC(y, m, 1); t <= b; m += k, t = Date.UTC(y, m, 1)) {
        out.push([t, stamp(t, k >= 12 ? "y" : "m")]);
      }
      return out;
    }
    return out;
  }
  function setUp(svg) {
    var plot = svg.querySelector("svg.plot"), axis = svg.querySelector("g.x-axis");
    if (!plot || !axis) { return; }
    var vb = plot.viewBox.baseVal, x0 = vb.x, w0 = vb.width, left = plot.x.baseVal.value,
      width = plot.width.baseVal.value, height = svg.viewBox.baseVal.height,
      t0 = +svg.getAttribute("data-t0"), t1 = +svg.getAttribute("data-t1"),
      original = axis.innerHTML, fixed = plot.querySelectorAll(".fix"), i,
      base = [], selection = null, start = null;
    for (i = 0; i < fixed.length; i++) { base.push(fixed[i].getAttribute("transform")); }
    function relabel(x, w) {
      if (w >= w0) { axis.innerHTML = original; return; }
      var a = t0 + (x - x0) / w0 * (t1 - t0), b = t0 + (x + w - x0) / w0 * (t1 - t0),
        y = +axis.getAttribute("data-y"), parts = [], list = ticks(a, b), j, px, anchor;
      for (j = 0; j < list.length; j++) {
        px = left + (list[j][0] - a) / (b - a) * width;
        anchor = px < left + 30 ? "start" : px > left + width - 30 ? "end" : "middle";
        parts.push('<line class="grid" x1="' + px + '" x2="' + px + '" y1="' + y + '" y2="' +
          (y + 4) + '"/><text class="tick" x="' + px + '" y="' + (height - 8) +
          '" text-anchor="' + anchor + '">' + list[j][1] + "</text>");
      }
      axis.innerHTML = parts.join("");
    }
    function show(x, w) {
      w = Math.max(Math.min(w, w0), w0 / 2000);
      x = Math.max(x0, Math.min(x, x0 + w0 - w));
      vb.x = x; vb.width = w;
      var k = w / w0, j;
      for (j = 0; j < fixed.length; j++) {
        fixed[j].setAttribute("transform", k < 1 ? base[j] + " scale(" + k + " 1)" : base[j]);
      }
      svg.classList.toggle("zoomed", k < 1);
      relabel(x, w);
    }
    function userX(event) {
      var r = svg.getBoundingClientRect();
      return (event.clientX - r.left) * svg.viewBox.baseVal.width / r.width;
    }
    function plotX(ux) {
      return vb.x + (Math.max(left, Math.min(ux, left + width)) - left) / width * vb.width;
    }
    svg.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) { return; }
      start = userX(event);
      selection = document.createElementNS(svg.namespaceURI, "rect");
      selection.setAttribute("class", "selection");
      selection.setAttribute("y", 0);
      selection.setAttribute("height", height);
      svg.appendChild(selection);
      svg.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    svg.addEventListener("pointermove", function (event) {
      if (start === null) { return; }
      var ux = Math.max(left, Math.min(userX(event), left + width)),
        s = Math.max(left, Math.min(start, left + width));
      selection.setAttribute("x", Math.min(s, ux));
      selection.setAttribute("width", Math.abs(ux - s));
    });
    function finish(event) {
      if (start === null) { return; }
      var end = userX(event), a = plotX(Math.min(start, end)), b = plotX(Math.max(start, end));
      if (Math.abs(end - start) > 4 && b > a) { show(a, b - a); }
      selection.remove();
      selection = null; start = null;
    }
    svg.addEventListener("pointerup", finish);
    svg.addEventListener("pointercancel", function () {
      if (selection) { selection.remove(); }
      selection = null; start = null;
    });
    svg.addEventListener("dblclick", function () { show(x0, w0); });
    svg.addEventListener("wheel", function (event) {
      var delta = event.deltaY || event.deltaX;
      if (event.shiftKey && delta) {
        var p = plotX(userX(event)), f = delta < 0 ? 0.8 : 1.25;
        show(p - (p - vb.x) * f, vb.width * f);
        event.preventDefault();
      } else if (vb.width < w0 && Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
        show(vb.x + event.deltaX / width * vb.width, vb.width);
        event.preventDefault();
      }
    }, {passive: false});
  }
  var charts = document.querySelectorAll("svg.chart.zoom");
  for (var c = 0; c < charts.length; c++) { setUp(charts[c]); }
})();
"""
