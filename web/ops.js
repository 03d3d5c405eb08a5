// ops.js: the operations view. Lists the sessions changed most recently (the client's
// listSessions: GET /api/meeting-bot/sessions) and keeps each row live over one WebSocket with
// one subscription per bot; shows the refused deliveries of the last hour by reason and charts deliveries per
// second and webhook-to-browser latency from this relay's /metrics. No framework, no chart
// library: DOM text and plain SVG (never innerHTML with data from the wire).
import { RelayClient, emptyBotState, reduceBot } from '/relay-client.js';
import { $, WS_URL, devToken, fmtTime, isDevelopment, showConnection } from '/page.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const params = new URLSearchParams(location.search);
const hashParams = new URLSearchParams(location.hash.replace(/^#/, ''));
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** How often /metrics is read and the list refreshed (`?poll=` and `?list=` in ms). */
const METRICS_MS = clamp(Number(params.get('poll')) || 2000, 250, 60_000);
const LIST_MS = clamp(Number(params.get('list')) || 5000, 250, 60_000);
/** Rows kept (and bots subscribed); the sessions route gives the newest. */
const MAX_BOTS = 50;
/** Samples kept for the charts: five minutes at the default interval. */
const MAX_SAMPLES = 151;

/** Every webhook outcome that is not a stored delivery, with what it means to an operator. */
const REFUSALS = [
  ['unauthorized', '401', 'no valid key or signature'],
  ['bad_request', '400', 'not a JSON object, or no bot id'],
  ['unsupported_media_type', '415', 'content type or encoding'],
  ['too_large', '413', 'body over the limit'],
  ['unavailable', '503', 'store unavailable (MeetingBaaS retries)'],
  ['error', '500', 'relay error'],
];
const STORED = new Set(['accepted', 'duplicate']);

let development = false;
let token = '';
let client = null;
/** bot id -> { state (reduceBot), row } */
const bots = new Map();

// --- tokens --------------------------------------------------------------------------------

/** The token in use; in development mode a fresh one is minted when there is none. */
async function currentToken({ fresh = false } = {}) {
  if (token && !(fresh && development)) return token;
  if (!development) return '';
  token = await devToken('*');
  return token;
}

function showNotice(id, text) {
  const el = $(id);
  el.textContent = text ?? '';
  el.hidden = !text;
}

// --- the bots ------------------------------------------------------------------------------

function updatedAt(state) {
  const t = Date.parse(state?.session?.last_updated ?? '');
  return Number.isNaN(t) ? 0 : t;
}

function rowFor(botId) {
  const tr = document.createElement('tr');
  tr.dataset.bot = botId;
  const bot = document.createElement('td');
  bot.className = 'bot-id mono';
  const link = document.createElement('a');
  link.href = `/?bot=${encodeURIComponent(botId)}`;
  link.textContent = botId;
  bot.append(link);
  const status = document.createElement('td');
  const pill = document.createElement('span');
  pill.className = 'pill';
  status.append(pill);
  const last = document.createElement('td');
  last.className = 'last-event';
  const updated = document.createElement('td');
  const time = document.createElement('time');
  time.className = 'updated';
  updated.append(time);
  tr.append(bot, status, last, updated);
  return tr;
}

function renderRow(entry) {
  const { state, row } = entry;
  const s = state.session;
  const pill = row.querySelector('.pill');
  const status = state.status ?? '';
  if (pill.textContent !== (status || '—')) pill.textContent = status || '—';
  pill.dataset.status = status;
  row.dataset.status = status;
  const err = s?.error;
  const last = row.querySelector('.last-event');
  const detail = [s?.last_event ?? '', err?.code ? `(${err.code})` : '', status === 'starting' && s?.attempt != null ? `attempt ${s.attempt}${s.max != null ? ` of ${s.max}` : ''}` : '']
    .filter(Boolean)
    .join(' ');
  last.textContent = detail || '—';
  last.title = err?.message ?? '';
  const time = row.querySelector('.updated');
  time.dateTime = s?.last_updated ?? '';
  time.textContent = fmtTime(s?.last_updated);
}

/** Rows newest change first; only moved when out of place (a live region stays calm). */
function orderRows() {
  const body = $('bots-body');
  const sorted = [...bots.values()].sort((a, b) => updatedAt(b.state) - updatedAt(a.state) || a.row.dataset.bot.localeCompare(b.row.dataset.bot));
  sorted.forEach((entry, i) => {
    if (body.children[i] !== entry.row) body.insertBefore(entry.row, body.children[i] ?? null);
  });
  $('bots-empty').hidden = bots.size > 0;
  $('bots-count').textContent = bots.size ? `(${bots.size})` : '';
}

function onMessage(msg) {
  if (msg.type === 'status_update') {
    const entry = bots.get(msg.bot_id);
    if (!entry) return;
    entry.state = client.bot(msg.bot_id) ?? reduceBot(entry.state, msg, { maxEvents: 0 });
    renderRow(entry);
    orderRows();
  } else if (msg.type === 'error') {
    if (msg.code === 'forbidden') showNotice('notice', 'This token does not name every bot: use one for "*".');
    else if (msg.code !== 'token_expired') showNotice('notice', `The relay refused: ${msg.message} (${msg.code})`);
  }
}

/** The sessions the relay has, newest first; new ones are added and subscribed. */
async function refreshList() {
  if (!token && !development) return;
  let sessions;
  try {
    sessions = await ensureClient().listSessions({ limit: MAX_BOTS });
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      showNotice('notice', e.status === 401
        ? 'The token was refused (expired or not signed with this relay\'s client secret).'
        : 'This token does not name every bot: mint one with relay token --bot \'*\'.');
      $('token-form').hidden = false;
    } else {
      showNotice('notice', `Could not list the sessions: ${e.message ?? e}`);
    }
    return;
  }
  showNotice('notice', null);
  const listed = new Set();
  for (const snap of sessions.slice(0, MAX_BOTS)) {
    if (typeof snap?.bot_id !== 'string') continue;
    listed.add(snap.bot_id);
    if (bots.has(snap.bot_id)) continue;
    const entry = { state: reduceBot(emptyBotState(snap.bot_id), snap, { maxEvents: 0 }), row: rowFor(snap.bot_id) };
    bots.set(snap.bot_id, entry);
    renderRow(entry);
    ensureClient().subscribe(snap.bot_id);
  }
  // Past MAX_BOTS, the bots that changed least recently make room.
  const extra = [...bots.values()].sort((a, b) => updatedAt(b.state) - updatedAt(a.state)).slice(MAX_BOTS);
  for (const entry of extra) {
    const id = entry.row.dataset.bot;
    if (listed.has(id)) continue;
    client?.unsubscribe(id);
    entry.row.remove();
    bots.delete(id);
  }
  orderRows();
}

function ensureClient() {
  if (client) return client;
  client = new RelayClient({
    url: WS_URL,
    // A fresh token for every connect in development mode; the given one otherwise.
    getToken: () => currentToken({ fresh: development }),
    onMessage,
    onStatus: (state, detail) => showConnection($('connection'), state, detail),
    onError: (e) => console.warn('relay-client:', e),
    // The page wants each bot's session as it is now: a snapshot on every subscribe.
    storage: null,
    maxEvents: 0,
  });
  window.relayOps = { client, bots };
  return client;
}

// --- metrics -------------------------------------------------------------------------------

/** Prometheus text to series -> value (`name{labels}` as the exposition writes it). */
export function parseMetrics(text) {
  const series = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    if (i <= 0) continue;
    const v = Number(line.slice(i + 1));
    if (Number.isFinite(v)) series.set(line.slice(0, i), v);
  }
  return series;
}

function labelled(series, name, label) {
  const out = new Map();
  const prefix = `${name}{${label}="`;
  for (const [k, v] of series) {
    if (k.startsWith(prefix) && k.endsWith('"}')) out.set(k.slice(prefix.length, -2), v);
  }
  return out;
}

function sampleOf(series, t) {
  const webhooks = labelled(series, 'relay_webhooks_total', 'outcome');
  let total = 0;
  let refused = 0;
  for (const [outcome, n] of webhooks) {
    total += n;
    if (!STORED.has(outcome)) refused += n;
  }
  const buckets = [...labelled(series, 'relay_delivery_seconds_bucket', 'le')]
    .map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n])
    .filter(([le]) => !Number.isNaN(le))
    .sort((a, b) => a[0] - b[0]);
  return {
    t,
    total,
    refused,
    sum: series.get('relay_delivery_seconds_sum') ?? 0,
    count: series.get('relay_delivery_seconds_count') ?? 0,
    buckets,
    lastHour: labelled(series, 'relay_webhooks_last_hour', 'outcome'),
  };
}

const samples = [];

/** One point per interval between two samples; null where nothing happened (or a restart). */
function points() {
  const out = { all: [], refused: [], mean: [], p95: [] };
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = (b.t - a.t) / 1000;
    const reset = b.total < a.total || b.count < a.count;
    if (dt <= 0 || reset) continue;
    out.all.push([b.t, (b.total - a.total) / dt]);
    out.refused.push([b.t, (b.refused - a.refused) / dt]);
    const n = b.count - a.count;
    if (n > 0) {
      out.mean.push([b.t, ((b.sum - a.sum) / n) * 1000]);
      const before = new Map(a.buckets);
      const finite = b.buckets.filter(([le]) => Number.isFinite(le));
      const hit = b.buckets.find(([le, c]) => c - (before.get(le) ?? 0) >= 0.95 * n);
      const le = hit && Number.isFinite(hit[0]) ? hit[0] : (finite.at(-1)?.[0] ?? 0);
      out.p95.push([b.t, le * 1000]);
    } else {
      out.mean.push([b.t, null]);
      out.p95.push([b.t, null]);
    }
  }
  return out;
}

/** A round top for the y axis: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function svgEl(name, attrs) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function fmtNumber(v) {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2).replace(/\.?0+$/, '') || '0';
}

/**
 * Lines of [t, value] (null breaks a line) over the samples' span, drawn in the SVG's own
 * pixel size (so its text stays legible on a phone).
 */
function drawChart(svg, lines, { from, to }) {
  const W = Math.max(200, Math.round(svg.clientWidth || 600));
  const H = 160;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const left = 40;
  const top = 8;
  const bottom = 18;
  const values = lines.flatMap((l) => l.points.map(([, v]) => v)).filter((v) => v != null);
  const max = niceMax(Math.max(0, ...values));
  const x = (t) => left + ((t - from) / Math.max(1, to - from)) * (W - left - 4);
  const y = (v) => top + (1 - v / max) * (H - top - bottom);
  const children = [];
  for (const v of [0, max / 2, max]) {
    children.push(svgEl('line', { class: 'grid', x1: left, x2: W - 4, y1: y(v), y2: y(v) }));
    const label = svgEl('text', { class: 'axis', x: left - 6, y: y(v) + 4, 'text-anchor': 'end' });
    label.textContent = fmtNumber(v);
    children.push(label);
  }
  const span = svgEl('text', { class: 'axis', x: left, y: H - 3 });
  span.textContent = `${Math.round((to - from) / 1000)} s ago`;
  const now = svgEl('text', { class: 'axis', x: W - 4, y: H - 3, 'text-anchor': 'end' });
  now.textContent = 'now';
  children.push(span, now);
  let drawn = 0;
  for (const line of lines) {
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        children.push(svgEl('circle', { class: `series ${line.cls}`, cx: run[0][0], cy: run[0][1], r: 2.5 }));
      } else if (run.length > 1) {
        children.push(svgEl('polyline', { class: `series ${line.cls}`, points: run.map((p) => p.join(',')).join(' ') }));
      }
      run = [];
    };
    for (const [t, v] of line.points) {
      if (v == null) {
        flush();
        continue;
      }
      run.push([x(t).toFixed(1), y(v).toFixed(1)]);
      drawn++;
    }
    flush();
  }
  svg.dataset.points = String(drawn);
  svg.dataset.max = String(max);
  svg.dataset.peak = String(Math.max(0, ...values));
  svg.replaceChildren(...children);
}

/** One reason of the refused list: its status code (when known), what it means, the count. */
function refusalItem(outcome, n, status, meaning) {
  const li = document.createElement('li');
  li.dataset.outcome = outcome;
  li.dataset.count = String(n);
  const code = document.createElement('code');
  code.textContent = status ?? '';
  const reason = document.createElement('span');
  reason.className = 'reason';
  reason.textContent = meaning ? `${outcome.replaceAll('_', ' ')}: ${meaning}` : outcome;
  const count = document.createElement('span');
  count.className = 'count';
  count.textContent = String(n);
  li.append(code, reason, count);
  return li;
}

function renderRefused(lastHour) {
  const list = $('refused');
  let refused = 0;
  const items = [];
  for (const [outcome, status, meaning] of REFUSALS) {
    const n = lastHour.get(outcome) ?? 0;
    refused += n;
    if (n > 0) items.push(refusalItem(outcome, n, status, meaning));
  }
  // Outcomes this page does not know yet still count.
  for (const [outcome, n] of lastHour) {
    if (STORED.has(outcome) || REFUSALS.some(([o]) => o === outcome) || n === 0) continue;
    refused += n;
    items.push(refusalItem(outcome, n, null, null));
  }
  list.replaceChildren(...items);
  const total = $('refused-total');
  total.dataset.count = String(refused);
  total.textContent = refused === 0 ? 'none' : `${refused} refused`;
  const stored = (lastHour.get('accepted') ?? 0) + (lastHour.get('duplicate') ?? 0);
  $('accepted-line').textContent = `${lastHour.get('accepted') ?? 0} accepted, ${lastHour.get('duplicate') ?? 0} duplicates (${stored} stored deliveries answered 200).`;
}

async function pollMetrics() {
  let text;
  try {
    const res = await fetch('/metrics', { cache: 'no-store' });
    if (!res.ok) {
      showNotice('metrics-notice', res.status === 403
        ? 'This relay answers /metrics on its own machine only: open this page at http://127.0.0.1:<port>/ops there.'
        : `/metrics: HTTP ${res.status}`);
      return;
    }
    text = await res.text();
  } catch (e) {
    showNotice('metrics-notice', `/metrics could not be read: ${e.message ?? e}`);
    return;
  }
  showNotice('metrics-notice', null);
  const sample = sampleOf(parseMetrics(text), Date.now());
  samples.push(sample);
  if (samples.length > MAX_SAMPLES) samples.splice(0, samples.length - MAX_SAMPLES);
  renderRefused(sample.lastHour);
  const p = points();
  const from = samples[0].t;
  const to = sample.t;
  drawChart($('chart-rate'), [
    { cls: 'all', points: p.all },
    { cls: 'refused', points: p.refused },
  ], { from, to });
  // Latency exists only for intervals in which events reached a browser: joined across the rest.
  const known = (pts) => pts.filter(([, v]) => v != null);
  drawChart($('chart-latency'), [
    { cls: 'mean', points: known(p.mean) },
    { cls: 'p95', points: known(p.p95) },
  ], { from, to });
  const lastRate = p.all.at(-1)?.[1];
  $('rate-now').textContent = lastRate != null ? `now ${fmtNumber(lastRate)}/s` : '';
  const lastMean = [...p.mean].reverse().find(([, v]) => v != null)?.[1];
  $('latency-now').textContent = lastMean != null ? `last ${fmtNumber(lastMean)} ms` : '';
  $('charts-window').textContent = `last ${Math.round((to - from) / 1000)} s, every ${METRICS_MS / 1000} s`;
}

// --- wiring --------------------------------------------------------------------------------

async function main() {
  token = hashParams.get('token') || params.get('token') || '';
  development = await isDevelopment();
  $('token').value = token;
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('token').value.trim();
    if (client) client.close();
    client = null;
    for (const entry of bots.values()) entry.row.remove();
    bots.clear();
    refreshList().catch((e) => showNotice('notice', String(e.message ?? e)));
  });
  if (!token && !development) {
    $('token-form').hidden = false;
    showNotice('notice', 'Enter a token for every bot to list and watch them.');
  }
  orderRows();
  const tick = (fn, ms) => {
    const run = () => fn().catch((e) => console.warn('ops:', e)).finally(() => setTimeout(run, ms));
    run();
  };
  tick(pollMetrics, METRICS_MS);
  tick(refreshList, LIST_MS);
}

main();
