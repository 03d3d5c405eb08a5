// The operations view (/ops) in headless Chromium against the real `relay serve`: the bots
// seen recently with their live status over one WebSocket, the refused deliveries of the last
// hour by reason, the delivery-rate and latency charts from /metrics; its layout at desktop and
// phone widths, with screenshots kept in target/screenshots/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './chromium.mjs';
import { Relay, ROOT, mintToken, sleep, uniqueBot } from './support.mjs';

const SHOTS = join(ROOT, 'target', 'screenshots');

/** Width and height of a PNG, from its IHDR chunk. */
function pngSize(buf) {
  assert.equal(buf.subarray(1, 4).toString('latin1'), 'PNG', 'a PNG file');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

async function box(page, selector) {
  return page.$eval(selector, (e) => {
    const r = e.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height };
  });
}

/** No part of the page is wider than the window (nothing to scroll sideways). */
async function assertNoSidewaysScroll(page, label) {
  const { scroll, inner } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  assert.ok(scroll <= inner, `${label}: the page is ${scroll}px wide in a ${inner}px window`);
}

describe('operations view', () => {
  let relay;
  let browser;
  const [a, b, c, d] = ['ops-a', 'ops-b', 'ops-c', 'ops-d'].map(uniqueBot);
  let n = 0;
  const post = (bot, code) => relay.statusChange(bot, code, n++);
  const rows = (page) => page.$$eval('#bots-body tr', (trs) => trs.map((tr) => ({ bot: tr.dataset.bot, status: tr.dataset.status })));
  const ours = (list) => list.filter((r) => [a, b, c, d].includes(r.bot));

  before(async () => {
    relay = await Relay.start(); // development mode: the page mints its own all-bots token
    await post(a, 'joining_call');
    await post(b, 'in_call_recording');
    await relay.webhook({ event: 'complete', data: { bot_id: c } });
    // Refused: two with a wrong key, one that is not JSON.
    for (let i = 0; i < 2; i++) {
      const r = await relay.json('/api/meeting-bot/webhook', {
        method: 'POST',
        body: { event: 'bot.status_change', data: { bot_id: a, n: 1000 + i } },
        headers: { 'x-meeting-baas-api-key': 'not-the-key' },
      });
      assert.equal(r.status, 401);
    }
    const bad = await relay.json('/api/meeting-bot/webhook', {
      method: 'POST',
      body: '{not json',
      headers: { 'x-meeting-baas-api-key': relay.apiKey },
    });
    assert.equal(bad.status, 400);
    mkdirSync(SHOTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await relay?.dispose();
  });

  it('lists the bots newest first and keeps each row live over one WebSocket', async () => {
    browser = await launch({ viewport: { width: 1280, height: 800 } });
    const { page, problems } = browser;
    const sockets = [];
    const subscribes = [];
    page.on('websocket', (ws) => {
      sockets.push(ws.url());
      ws.on('framesent', (f) => {
        try {
          const m = JSON.parse(f.payload);
          if (m.action === 'subscribe') subscribes.push(m.bot_id);
        } catch {
          /* not JSON */
        }
      });
    });
    await page.goto(`${relay.base}/ops?poll=300&list=400`);
    await page.waitForFunction(
      (bots) => bots.every((id) => document.querySelector(`#bots-body tr[data-bot="${id}"]`)),
      [a, b, c],
      { timeout: 15_000 },
    );
    assert.deepEqual(
      ours(await rows(page)),
      [
        { bot: c, status: 'completed' },
        { bot: b, status: 'recording' },
        { bot: a, status: 'joining' },
      ],
      'open and final sessions, newest change first',
    );
    await page.waitForSelector('#connection[data-state="open"]', { timeout: 15_000 });
    assert.equal(await page.isVisible('#token-form'), false, 'development mode: the page mints its own token');

    // A live event moves its bot's row to the top with its new status.
    const sent = Date.now();
    await post(a, 'in_call_recording');
    await page.waitForFunction((id) => {
      const first = document.querySelector('#bots-body tr');
      return first?.dataset.bot === id && first.dataset.status === 'recording';
    }, a, { timeout: 10_000 });
    assert.ok(Date.now() - sent < 5_000, `the row changed ${Date.now() - sent} ms after the webhook`);

    // A bot first seen after the page opened joins the list, on the same socket.
    await post(d, 'joining_call');
    await page.waitForSelector(`#bots-body tr[data-bot="${d}"][data-status="joining"]`, { timeout: 10_000 });
    await post(d, 'in_waiting_room');
    await page.waitForSelector(`#bots-body tr[data-bot="${d}"][data-status="waiting"]`, { timeout: 10_000 });
    assert.equal(sockets.length, 1, `one WebSocket for every bot: ${sockets}`);
    for (const bot of [a, b, c, d]) assert.ok(subscribes.includes(bot), `${bot} subscribed on it: ${subscribes}`);
    assert.equal(new Set(subscribes).size, subscribes.length, `each bot subscribed once: ${subscribes}`);
    assert.deepEqual(problems, []);
  });

  it('shows the refused deliveries of the last hour by reason', async () => {
    const { page } = browser;
    await page.waitForSelector('#refused-total[data-count="3"]', { timeout: 10_000 });
    const reasons = await page.$$eval('#refused li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.outcome, Number(li.dataset.count)])));
    assert.deepEqual(reasons, { unauthorized: 2, bad_request: 1 });
    assert.match(await page.textContent('#accepted-line'), /^\d+ accepted, 0 duplicates/);
  });

  it('charts deliveries per second and webhook-to-browser latency from /metrics', async () => {
    const { page } = browser;
    for (let i = 0; i < 8; i++) await post(b, i % 2 ? 'recording_paused' : 'recording_resumed');
    // Two samples make the first point of each line, three its first segment.
    await page.waitForFunction(() => {
      const rate = document.getElementById('chart-rate');
      const latency = document.getElementById('chart-latency');
      return Number(rate.dataset.peak) > 0 && rate.querySelector('polyline.all') && Number(latency.dataset.peak) > 0;
    }, null, { timeout: 10_000 });
    const lines = await page.$$eval('#chart-rate polyline.all', (ps) => ps.map((p) => p.getAttribute('points').split(' ').length));
    assert.ok(lines.some((k) => k > 1), `a line of the delivery rate: ${lines}`);
    const latency = await page.$$eval('#chart-latency .series.mean', (ps) => ps.length);
    assert.ok(latency > 0, 'the latency of the events the page received is drawn');
    assert.match(await page.textContent('#latency-now'), /^last [\d.]+ ms$/);
  });

  it('lays out in columns on a desktop and stacked on a phone, nothing wider than the window', async () => {
    const { page } = browser;
    await page.setViewportSize({ width: 1280, height: 800 });
    await sleep(400);
    const bots = await box(page, '#bots-panel');
    const refused = await box(page, '#refused-panel');
    const charts = await box(page, '#charts-panel');
    assert.ok(bots.right <= refused.left + 1, `the bots beside the counts: ${JSON.stringify({ bots, refused })}`);
    assert.ok(Math.abs(refused.left - charts.left) < 1 && charts.top >= refused.bottom - 1, 'counts above the charts, one column');
    assert.ok(bots.width > refused.width, 'the bots get the wider column');
    await assertNoSidewaysScroll(page, 'desktop');
    const desktop = await page.screenshot({ path: join(SHOTS, 'ops-desktop.png'), fullPage: true });
    assert.equal(pngSize(desktop).width, 1280);

    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(400);
    const pb = await box(page, '#bots-panel');
    const pr = await box(page, '#refused-panel');
    const pc = await box(page, '#charts-panel');
    assert.ok(pr.top >= pb.bottom - 1 && pc.top >= pr.bottom - 1, `stacked: ${JSON.stringify({ pb, pr, pc })}`);
    for (const [name, r] of [['bots', pb], ['refused', pr], ['charts', pc]]) {
      assert.ok(r.left >= 0 && r.right <= 390, `${name} panel inside the window: ${JSON.stringify(r)}`);
    }
    const svg = await box(page, '#chart-rate');
    assert.ok(svg.width > 200 && svg.right <= 390, `the chart fits the phone: ${JSON.stringify(svg)}`);
    // Each bot row: its id and its status on one line.
    const row = await page.$eval(`#bots-body tr[data-bot="${a}"]`, (tr) => {
      const [id, status] = [...tr.children].map((td) => td.getBoundingClientRect());
      return { idTop: id.top, statusTop: status.top, statusRight: status.right };
    });
    assert.ok(Math.abs(row.idTop - row.statusTop) < 8 && row.statusRight <= 390, `a phone row: ${JSON.stringify(row)}`);
    await assertNoSidewaysScroll(page, 'phone');
    const phone = await page.screenshot({ path: join(SHOTS, 'ops-phone.png'), fullPage: true });
    const size = pngSize(phone);
    assert.equal(size.width, 390);
    assert.ok(size.height >= 844, `the whole page: ${size.height}px`);
    assert.ok(readFileSync(join(SHOTS, 'ops-phone.png')).length > 10_000, 'a screenshot with something on it');
  });

  it('asks for a token for every bot when it is given one for some bots', async () => {
    const secret = 'ops-client-secret-'.padEnd(40, 'x');
    let strict;
    let other;
    try {
      strict = await Relay.start({ env: { MEETINGBAAS_API_KEY: 'ops-key', RELAY_CLIENT_SECRET: secret } });
      other = await launch({ viewport: { width: 1280, height: 800 } });
      const one = mintToken(secret, a);
      await other.page.goto(`${strict.base}/ops#token=${one}`);
      await other.page.waitForSelector('#notice:not([hidden])', { timeout: 10_000 });
      assert.match(await other.page.textContent('#notice'), /every bot/);
      assert.equal(await other.page.isVisible('#token-form'), true);
      const all = mintToken(secret, '*');
      await strict.json('/api/meeting-bot/webhook', {
        method: 'POST',
        body: { event: 'bot.status_change', data: { bot_id: b, status: { code: 'joining_call' } } },
        headers: { 'x-meeting-baas-api-key': 'ops-key' },
      });
      await other.page.fill('#token', all);
      await other.page.click('#use-token');
      await other.page.waitForSelector(`#bots-body tr[data-bot="${b}"][data-status="joining"]`, { timeout: 10_000 });
    } finally {
      await other?.close();
      await strict?.dispose();
    }
  });
});
