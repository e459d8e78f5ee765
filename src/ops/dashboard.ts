/**
 * The dashboard page the HTTP handler serves at `GET /`: one HTML document with inline CSS and a small inline
 * script (no framework). It polls `cache/status` and `stock?status=CRITICAL,ATTENTION` and charts one product's
 * days with uPlot, served from the package (`assets/uplot.js`, `assets/uplot.css`). Every URL in it is relative, so
 * any mount path works. Data is written with `textContent` only, never as HTML.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'

/** A uPlot file the page loads. */
export type UplotAsset = 'uplot.js' | 'uplot.css'

const UPLOT_FILES: Record<UplotAsset, string> = {
  'uplot.js': 'uplot/dist/uPlot.iife.min.js',
  'uplot.css': 'uplot/dist/uPlot.min.css',
}

/** Where uPlot's files are, or why they cannot be found (uplot is an optional dependency). */
export type UplotLocation = { ok: true; paths: Record<UplotAsset, string> } | { ok: false; reason: string }

let located: UplotLocation | undefined
const bytes = new Map<UplotAsset, Promise<Buffer>>()

/** Resolves uPlot once, from this module (so the package's own dependency is found wherever it is mounted). */
export function locateUplot(): UplotLocation {
  if (located !== undefined) return located
  try {
    // The CommonJS build has no import.meta.url (esbuild leaves it undefined there); __filename stands in.
    const here = import.meta.url ?? __filename
    const require = createRequire(here)
    located = {
      ok: true,
      paths: {
        'uplot.js': require.resolve(UPLOT_FILES['uplot.js']),
        'uplot.css': require.resolve(UPLOT_FILES['uplot.css']),
      },
    }
  } catch (e) {
    located = {
      ok: false,
      reason: `the optional dependency uplot cannot be resolved (${(e as Error).message.split('\n')[0]})`,
    }
  }
  return located
}

/** The bytes of a uPlot file, read once and kept; undefined when uPlot is not installed. */
export function uplotAsset(name: UplotAsset): Promise<Buffer> | undefined {
  const where = locateUplot()
  if (!where.ok) return undefined
  let p = bytes.get(name)
  if (p === undefined) {
    p = readFile(where.paths[name])
    // A failed read is not kept: the next request tries again.
    p.catch(() => bytes.delete(name))
    bytes.set(name, p)
  }
  return p
}

const STYLE = `
:root { --bg: #f5f6f8; --panel: #fff; --text: #1f2933; --muted: #6b7280; --line: #e3e6eb; --accent: #2563eb;
  --ok: #15803d; --ok-bg: #dcfce7; --att: #a16207; --att-bg: #fef3c7; --crit: #b91c1c; --crit-bg: #fee2e2; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px; background: #111827; color: #f9fafb; }
header h1 { margin: 0; font-size: 18px; font-weight: 600; letter-spacing: .2px; }
header .meta { color: #cbd5e1; font-size: 13px; }
header .spacer { flex: 1; }
main { padding: 20px 24px 32px; max-width: 1280px; margin: 0 auto; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin-bottom: 16px; }
.card, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; }
.card { padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; }
.card .value { font-size: 24px; font-weight: 600; margin: 2px 0; font-variant-numeric: tabular-nums; }
.card .sub { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: minmax(280px, 2fr) minmax(360px, 3fr); gap: 16px; align-items: start; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
.panel { padding: 14px 16px; min-width: 0; }
.panel h2 { margin: 0 0 10px; font-size: 15px; font-weight: 600; }
.panel h2 small { color: var(--muted); font-weight: 400; font-size: 12px; margin-left: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; }
td.neg { color: var(--crit); font-weight: 600; }
tbody tr.pick { cursor: pointer; }
tbody tr.pick:hover, tbody tr.chosen { background: #eef2ff; }
.product-cell { max-width: 220px; overflow: hidden; text-overflow: ellipsis; }
button.link { all: unset; cursor: pointer; color: var(--accent); }
button.link:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.badge.OK { color: var(--ok); background: var(--ok-bg); }
.badge.ATTENTION { color: var(--att); background: var(--att-bg); }
.badge.CRITICAL { color: var(--crit); background: var(--crit-bg); }
.badge.flag { color: #f9fafb; background: #b91c1c; }
.badge.fine { color: #0f172a; background: #bbf7d0; }
form { display: flex; gap: 8px; margin-bottom: 12px; }
input[type=text] { flex: 1; min-width: 0; padding: 7px 10px; border: 1px solid #cbd2dc; border-radius: 6px; font: inherit; }
button[type=submit] { padding: 7px 14px; border: 0; border-radius: 6px; background: var(--accent); color: #fff; font: inherit;
  font-weight: 600; cursor: pointer; }
.title { display: flex; align-items: center; gap: 10px; margin-bottom: 6px; }
.title h3 { margin: 0; font-size: 16px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 4px 12px; margin: 0 0 10px; }
dl.facts dt { color: var(--muted); font-size: 12px; }
dl.facts dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
#chart { min-height: 40px; }
.note { color: var(--muted); font-size: 13px; margin: 6px 0; }
.error { color: var(--crit); background: var(--crit-bg); border-radius: 6px; padding: 6px 10px; margin: 0 0 10px; }
details { margin-top: 10px; }
details summary { cursor: pointer; color: var(--muted); }
.days-wrap { max-height: 360px; overflow: auto; margin-top: 6px; }
[hidden] { display: none !important; }
`

// No backticks and no interpolation inside: this text is hashed for the page's Content-Security-Policy.
const SCRIPT = `
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var every = Number(params.get('every') || '2');
  if (!(every >= 0.5 && every <= 3600)) every = 2;
  var product = params.get('product') || '';
  var chart = null;
  var chartProduct = null;
  var stockout = null;
  var lastRisk = [];
  var useChart = document.body.getAttribute('data-uplot') === 'ok' && typeof window.uPlot === 'function';
  if (!useChart) {
    var why = document.body.getAttribute('data-uplot') === 'ok' ? 'uPlot did not load' : document.body.getAttribute('data-uplot-reason');
    $('chart-note').textContent = 'No chart: ' + (why || 'uPlot is not available') + '. The days are shown as a table.';
    $('chart-note').hidden = false;
    $('days').open = true;
    $('chart').hidden = true;
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function num(v) {
    return typeof v === 'number' ? v.toLocaleString(undefined, { maximumFractionDigits: 3 }) : '\\u2013';
  }
  function pct(r) { return r === null || r === undefined ? '\\u2013' : (r * 100).toFixed(1) + ' %'; }
  function ms(v) {
    if (typeof v !== 'number') return '\\u2013';
    return v < 10000 ? Math.round(v) + ' ms' : (v / 1000).toFixed(1) + ' s';
  }
  function badge(status) { return el('span', status, 'badge ' + status); }
  function getJson(url) {
    return fetch(url, { headers: { accept: 'application/json' }, cache: 'no-store' }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (!r.ok) {
          var err = body && body.error;
          throw new Error(err ? err.code + ': ' + err.message : 'HTTP ' + r.status);
        }
        return body;
      });
    });
  }
  function showError(id, message) {
    var e = $(id);
    e.textContent = message || '';
    e.hidden = !message;
  }

  function renderStatus(body) {
    var s = body.status, m = body.metrics, h = body.hitRatio;
    $('l1').textContent = pct(h.l1);
    $('l1-sub').textContent = num(m.l1Hits) + ' hits \\u00b7 ' + num(m.l1Misses) + ' misses';
    $('l2').textContent = pct(h.l2);
    $('l2-sub').textContent = num(m.l2Hits) + ' hits \\u00b7 ' + num(m.l2Misses) + ' misses \\u00b7 ' + num(m.l2Errors) + ' errors';
    $('lag').textContent = ms(s.oldestUnprocessedMs);
    $('lag-sub').textContent = 'oldest dirty mark ' + ms(s.oldestDirtyMs);
    $('dirty').textContent = num(s.dirty) + ' dirty';
    $('dirty-sub').textContent = num(s.inFlight) + ' batch' + (s.inFlight === 1 ? '' : 'es') + ' in flight \\u00b7 ' + num(m.recomputes) + ' recomputes';
    var bad = [];
    if (s.degraded) bad.push('L2 degraded');
    if (s.busDegraded) bad.push('bus degraded');
    if (s.closed) bad.push('closed');
    $('health').textContent = bad.length ? 'Degraded' : 'Healthy';
    $('health-sub').textContent = 'store debt ' + num(s.storeDebt) + ' \\u00b7 L1 ' + num(s.l1Size) + ' keys';
    var flags = $('flags');
    flags.replaceChildren();
    if (bad.length) bad.forEach(function (b) { flags.appendChild(el('span', b, 'badge flag')); });
    else flags.appendChild(el('span', 'healthy', 'badge fine'));
    $('today').textContent = 'D0 ' + s.today;
  }

  function renderRisk(body) {
    lastRisk = body.items;
    var tbody = $('risk-body');
    tbody.replaceChildren();
    $('risk-empty').hidden = body.items.length > 0;
    $('risk-count').textContent = body.items.length + (body.cursor ? '+' : '') + ' listed';
    body.items.forEach(function (p) {
      var tr = el('tr', null, 'pick');
      tr.setAttribute('data-product', p.product);
      tr.setAttribute('data-status', p.status);
      if (p.product === product) tr.classList.add('chosen');
      var cell = el('td', null, 'product-cell');
      var b = el('button', p.product, 'link');
      b.type = 'button';
      b.title = p.product;
      cell.appendChild(b);
      tr.appendChild(cell);
      var st = el('td');
      st.appendChild(badge(p.status));
      tr.appendChild(st);
      tr.appendChild(el('td', num(p.minClosing7d), 'num' + (p.minClosing7d < 0 ? ' neg' : '')));
      tr.appendChild(el('td', p.firstStockoutDate || '\\u2013'));
      tr.addEventListener('click', function () { choose(p.product); });
      tbody.appendChild(tr);
    });
    if (!product && body.items.length) choose(body.items[0].product);
  }

  var X_DAY = function (d) { return Date.parse(d + 'T00:00:00Z') / 1000; };

  function drawMarks(u) {
    var ctx = u.ctx, b = u.bbox, px = window.uPlot.pxRatio || 1;
    ctx.save();
    // uPlot leaves its last dash, alignment and baseline on the context.
    ctx.setLineDash([]);
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
    var y0 = u.valToPos(0, 'y', true);
    if (y0 >= b.top && y0 <= b.top + b.height) {
      ctx.strokeStyle = '#6b7280';
      ctx.lineWidth = px;
      ctx.beginPath();
      ctx.moveTo(b.left, y0);
      ctx.lineTo(b.left + b.width, y0);
      ctx.stroke();
    }
    if (stockout) {
      var x = u.valToPos(X_DAY(stockout), 'x', true);
      ctx.strokeStyle = '#b91c1c';
      ctx.fillStyle = '#b91c1c';
      ctx.lineWidth = 1.5 * px;
      ctx.setLineDash([5 * px, 4 * px]);
      ctx.beginPath();
      ctx.moveTo(x, b.top);
      ctx.lineTo(x, b.top + b.height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.font = (11 * px) + 'px system-ui, sans-serif';
      var label = 'stock-out ' + stockout;
      var w = ctx.measureText(label).width;
      var lx = x + 6 * px + w > b.left + b.width ? x - w - 6 * px : x + 6 * px;
      var ly = b.top + 14 * px;
      ctx.fillStyle = 'rgba(255, 255, 255, 0.9)';
      ctx.fillRect(lx - 3 * px, ly - 11 * px, w + 6 * px, 15 * px);
      ctx.fillStyle = '#b91c1c';
      ctx.fillText(label, lx, ly);
    }
    ctx.restore();
  }

  function chartWidth() { return Math.max(280, $('chart').clientWidth || 600); }

  function renderChart(p) {
    var data = [
      p.days.map(function (d) { return X_DAY(d.date); }),
      p.days.map(function (d) { return d.closing; }),
      p.days.map(function (d) { return d.closingWithPending; })
    ];
    stockout = p.firstStockoutDate;
    var box = $('chart');
    box.setAttribute('data-product', p.product);
    box.setAttribute('data-computed-at', String(p.computedAt));
    if (!useChart) return;
    if (chart && chartProduct === p.product) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    chartProduct = p.product;
    chart = new window.uPlot({
      width: chartWidth(),
      height: 300,
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'); },
      scales: {
        x: { time: true },
        y: {
          range: function (u, lo, hi) {
            var a = Math.min(0, lo), z = Math.max(0, hi), pad = (z - a) * 0.08 || 1;
            return [a - pad, z + pad];
          }
        }
      },
      series: [
        { label: 'Day', value: '{YYYY}-{MM}-{DD}' },
        { label: 'Closing', stroke: '#2563eb', width: 2, fill: 'rgba(37, 99, 235, 0.08)', points: { size: 5 } },
        { label: 'With pending', stroke: '#d97706', width: 2, dash: [6, 4], points: { show: false } }
      ],
      axes: [{ grid: { stroke: '#eef0f3' } }, { size: 64, grid: { stroke: '#eef0f3' } }],
      hooks: { draw: [drawMarks] }
    }, data, box);
  }

  function renderDays(p) {
    var tbody = $('days-body');
    tbody.replaceChildren();
    p.days.forEach(function (d, i) {
      var tr = el('tr');
      tr.appendChild(el('td', 'D' + i));
      tr.appendChild(el('td', d.date));
      [d.opening, d.movements, d.supply, d.demand, d.closing, d.closingWithPending].forEach(function (v, k) {
        tr.appendChild(el('td', num(v), 'num' + (k >= 4 && v < 0 ? ' neg' : '')));
      });
      tbody.appendChild(tr);
    });
  }

  function renderProduct(p) {
    $('product-view').hidden = false;
    $('product-title').textContent = p.product + (p.location ? ' @ ' + p.location : '');
    $('product-title').title = p.product;
    var st = $('product-status');
    st.replaceChildren(badge(p.status));
    if (p.stale) st.appendChild(el('span', 'stale', 'badge flag'));
    $('f-today').textContent = num(p.stockToday);
    $('f-min').textContent = num(p.minClosing7d);
    $('f-out').textContent = p.firstStockoutDate || 'none';
    $('f-at').textContent = new Date(p.computedAt).toLocaleTimeString();
    renderChart(p);
    renderDays(p);
  }

  var productSeq = 0;
  function loadProduct() {
    if (!product) return Promise.resolve();
    var seq = ++productSeq;
    var wanted = product;
    return getJson('stock/' + encodeURIComponent(wanted) + '/projection').then(function (p) {
      if (seq !== productSeq || wanted !== product) return;
      showError('product-error', '');
      renderProduct(p);
    }, function (e) {
      if (seq !== productSeq) return;
      showError('product-error', e.message);
    });
  }

  function choose(id) {
    product = id;
    $('product').value = id;
    var url = new URL(location.href);
    url.searchParams.set('product', id);
    history.replaceState(null, '', url);
    Array.prototype.forEach.call($('risk-body').children, function (tr) {
      tr.classList.toggle('chosen', tr.getAttribute('data-product') === id);
    });
    loadProduct();
  }

  $('product-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var id = $('product').value.trim();
    if (id) choose(id);
  });
  if (product) $('product').value = product;

  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(function () { if (chart) chart.setSize({ width: chartWidth(), height: 300 }); }).observe($('chart'));
  }

  function tick() {
    var status = getJson('cache/status').then(function (b) { showError('status-error', ''); renderStatus(b); },
      function (e) { showError('status-error', 'Status: ' + e.message); });
    var risk = getJson('stock?status=CRITICAL,ATTENTION').then(function (b) { showError('risk-error', ''); renderRisk(b); },
      function (e) { showError('risk-error', e.message); });
    Promise.all([status, risk, loadProduct()]).then(function () {
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      document.body.setAttribute('data-polls', String(Number(document.body.getAttribute('data-polls') || '0') + 1));
      setTimeout(tick, every * 1000);
    });
  }
  $('every').textContent = 'every ' + every + ' s';
  tick();
})();
`

/** The page's inline script hash, for its Content-Security-Policy (no other script runs but uPlot's file). */
const SCRIPT_HASH = `sha256-${createHash('sha256').update(SCRIPT).digest('base64')}`

/** The Content-Security-Policy the page is served with. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src 'self' '${SCRIPT_HASH}'`,
  // uPlot sets inline styles on its elements.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'self'",
].join('; ')

const escapeAttr = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** The dashboard page. uPlot's location decides between a chart and the table of days (with the reason). */
export function dashboardHtml(uplot: UplotLocation = locateUplot()): string {
  const uplotAttrs = uplot.ok
    ? 'data-uplot="ok"'
    : `data-uplot="missing" data-uplot-reason="${escapeAttr(uplot.reason)}"`
  const uplotTags = uplot.ok
    ? '<link rel="stylesheet" href="assets/uplot.css">\n<script src="assets/uplot.js"></script>'
    : ''
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stockcast dashboard</title>
<link rel="icon" href="data:,">
${uplotTags}
<style>${STYLE}</style>
</head>
<body ${uplotAttrs}>
<header>
  <h1>stockcast</h1>
  <span class="meta" id="today">D0</span>
  <span class="meta" id="updated">loading…</span>
  <span class="meta" id="every"></span>
  <span class="spacer"></span>
  <span id="flags"></span>
</header>
<main>
  <p class="error" id="status-error" hidden></p>
  <section class="cards" aria-label="Cache status">
    <div class="card"><div class="label">L1 hit ratio</div><div class="value" id="l1">–</div><div class="sub" id="l1-sub"></div></div>
    <div class="card"><div class="label">L2 hit ratio</div><div class="value" id="l2">–</div><div class="sub" id="l2-sub"></div></div>
    <div class="card"><div class="label">Freshness lag</div><div class="value" id="lag">–</div><div class="sub" id="lag-sub"></div></div>
    <div class="card"><div class="label">Queue</div><div class="value" id="dirty">–</div><div class="sub" id="dirty-sub"></div></div>
    <div class="card"><div class="label">Health</div><div class="value" id="health">–</div><div class="sub" id="health-sub"></div></div>
  </section>
  <section class="grid">
    <div class="panel" id="risk">
      <h2>At risk <small>CRITICAL and ATTENTION</small> <small id="risk-count"></small></h2>
      <p class="error" id="risk-error" hidden></p>
      <table>
        <thead><tr><th>Product</th><th>Status</th><th class="num">Min 7 d</th><th>Stock-out</th></tr></thead>
        <tbody id="risk-body"></tbody>
      </table>
      <p class="note" id="risk-empty" hidden>No product is at risk.</p>
      <p class="note">Click a product to chart its days.</p>
    </div>
    <div class="panel" id="product-panel">
      <h2>Projection by day</h2>
      <form id="product-form" autocomplete="off">
        <input type="text" id="product" name="product" placeholder="Product id" aria-label="Product id" maxlength="200">
        <button type="submit">Show</button>
      </form>
      <p class="error" id="product-error" hidden></p>
      <p class="note" id="chart-note" hidden></p>
      <div id="product-view" hidden>
        <div class="title"><h3 id="product-title"></h3><span id="product-status"></span></div>
        <dl class="facts">
          <div><dt>Stock today</dt><dd id="f-today"></dd></div>
          <div><dt>Min 7 d</dt><dd id="f-min"></dd></div>
          <div><dt>Stock-out</dt><dd id="f-out"></dd></div>
          <div><dt>Computed</dt><dd id="f-at"></dd></div>
        </dl>
        <div id="chart"></div>
        <details id="days">
          <summary>Days</summary>
          <div class="days-wrap">
            <table>
              <thead><tr><th>Day</th><th>Date</th><th class="num">Opening</th><th class="num">Moves</th><th class="num">Supply</th><th class="num">Demand</th><th class="num">Closing</th><th class="num">With pending</th></tr></thead>
              <tbody id="days-body"></tbody>
            </table>
          </div>
        </details>
      </div>
    </div>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`
}
