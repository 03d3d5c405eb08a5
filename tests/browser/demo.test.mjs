// The demo page in headless Chromium (playwright-core, the system's /usr/bin/chromium), served
// by the real `relay serve` in development mode: live status, refresh with no gap and no
// duplicate, reconnect after a server restart, the test-event control, a truncated transcript.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { Relay, ROOT, bigV1Complete, mintToken, sleep, tempDir, uniqueBot } from './support.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Headless Chromium with a fresh profile of its own; returns the profile dir, context and page. */
async function launch(viewport) {
  const profile = tempDir('relay-chromium');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return { profile, context, page };
}

/** Served path → file under web/ (the client module is the package in web/client/). */
const WEB_FILES = {
  'index.html': 'index.html',
  'app.js': 'app.js',
  'style.css': 'style.css',
  'page.js': 'page.js',
  'ops.html': 'ops.html',
  'ops.js': 'ops.js',
  'ops.css': 'ops.css',
  'relay-client.js': 'client/relay-client.js',
  'relay-client.d.ts': 'client/relay-client.d.ts',
};

describe('demo page', () => {
  let relay;
  let context;
  let page;
  let profile;
  const bot = uniqueBot('demo');
  const problems = [];
  let n = 0; // makes every posted webhook unique

  const url = () => `${relay.base}/?bot=${bot}`;
  const post = (code) => relay.statusChange(bot, code, n++);
  const statusText = () => page.textContent('#status');
  const state = () => page.getAttribute('#connection', 'data-state');

  /** The seq of every timeline item, and of the ones that arrived since the page loaded. */
  async function timeline() {
    return page.$$eval('#timeline li', (lis) => ({
      all: lis.map((li) => Number(li.dataset.seq)).sort((a, b) => a - b),
      live: lis.filter((li) => !li.classList.contains('restored')).map((li) => Number(li.dataset.seq)).sort((a, b) => a - b),
    }));
  }

  async function waitState(s, timeout = 15_000) {
    await page.waitForSelector(`#connection[data-state="${s}"]`, { timeout });
  }

  function watchPage(p) {
    p.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    p.on('console', (m) => {
      // A refused WebSocket while the relay is down is expected; nothing else is.
      if (m.type() === 'error' && !/WebSocket connection|ERR_CONNECTION_REFUSED|Failed to load resource|Failed to fetch/.test(m.text())) {
        problems.push(`console: ${m.text()}`);
      }
    });
  }

  before(async () => {
    const env = process.env.RELAY_WEB_DIR ? { RELAY_WEB_DIR: process.env.RELAY_WEB_DIR } : {};
    relay = await Relay.start({ env });
    ({ profile, context, page } = await launch({ width: 1100, height: 900 }));
    watchPage(page);
  });

  after(async () => {
    await context?.close();
    await relay?.dispose();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('serves the current web/ files (rebuild the relay when this fails)', async () => {
    for (const [f, file] of Object.entries(WEB_FILES)) {
      const res = await fetch(`${relay.base}/${f}`);
      assert.equal(res.status, 200, f);
      const served = await res.text();
      assert.ok(
        served === readFileSync(join(ROOT, 'web', file), 'utf8'),
        `/${f} differs from web/${file}: the relay binary embeds an old copy; run \`cargo build -p relay\``,
      );
    }
  });

  it('shows each new status within 1 s of the webhook', async () => {
    await page.goto(url());
    await waitState('open');
    assert.equal(await statusText(), 'no events yet');
    assert.equal(await page.textContent('#bot-label'), bot);
    for (const [code, status] of [
      ['joining_call', 'joining'],
      ['in_waiting_room', 'waiting'],
      ['in_call_not_recording', 'in_call'],
      ['in_call_recording', 'recording'],
    ]) {
      const t0 = Date.now();
      await post(code);
      await page.waitForFunction((s) => document.getElementById('status').textContent === s, status, { timeout: 1_000 });
      const ms = Date.now() - t0;
      assert.ok(ms < 1_000, `${status} after ${ms} ms`);
    }
    const tl = await timeline();
    assert.deepEqual(tl.all, [1, 2, 3, 4]);
    const first = await page.$eval('#timeline li:last-child', (li) => li.textContent);
    assert.match(first, /#1.*bot\.status_change.*joining/);
  });

  it('after leaving and coming back, shows the 3 events it missed, once each', async () => {
    await page.goto('about:blank'); // the page is gone; the tab (and its sessionStorage) stays
    for (const code of ['recording_paused', 'recording_resumed', 'recording_paused']) await post(code);
    await page.goto(url());
    await waitState('open');
    await page.waitForFunction(() => document.querySelectorAll('#timeline li').length >= 7, null, { timeout: 5_000 });
    await sleep(700); // anything extra (a duplicate) would show up by now
    const tl = await timeline();
    assert.deepEqual(tl.live, [5, 6, 7], 'exactly the missed events came over the socket');
    assert.deepEqual(tl.all, [1, 2, 3, 4, 5, 6, 7], 'the rest is remembered, nothing twice');
    assert.equal(await statusText(), 'paused');
  });

  it('a refresh shows the same timeline and no duplicate', async () => {
    await post('recording_resumed'); // seq 8, while the page is open
    await page.waitForFunction(() => document.getElementById('status').textContent === 'recording');
    await page.reload();
    await waitState('open');
    await sleep(700);
    const tl = await timeline();
    assert.deepEqual(tl.all, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(tl.live, [], 'nothing was missed, nothing is replayed');
    assert.equal(await statusText(), 'recording');
  });

  it('a new tab (no memory) shows the whole history once', async () => {
    const other = await context.newPage();
    watchPage(other);
    await other.goto(url());
    await other.waitForSelector('#connection[data-state="open"]');
    await other.waitForFunction(() => document.querySelectorAll('#timeline li').length >= 8, null, { timeout: 5_000 });
    await sleep(500);
    const seqs = await other.$$eval('#timeline li', (lis) => lis.map((li) => Number(li.dataset.seq)).sort((a, b) => a - b));
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(await other.textContent('#status'), 'recording');
    await other.close();
  });

  it('reconnects on its own after the relay is stopped and restarted', async () => {
    await relay.kill();
    await waitState('reconnecting', 5_000);
    await sleep(1_000);
    await relay.start();
    const t0 = Date.now();
    await waitState('open', 35_000);
    const back = Date.now() - t0;
    await post('call_ended');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'ended', null, { timeout: 2_000 });
    await sleep(500);
    const tl = await timeline();
    assert.deepEqual(tl.all, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(back < 35_000, `back in ${back} ms`);
  });

  it('the test-event control posts through /api/dev/test-event', async () => {
    assert.equal(await page.isVisible('#test-event'), true, 'shown in development mode');
    await page.selectOption('#event-type', 'meeting.started'); // late: the status never goes back
    await page.click('#send-test-event');
    await page.waitForFunction(() => document.querySelectorAll('#timeline li').length === 10, null, { timeout: 2_000 });
    assert.match(await page.textContent('#send-result'), /meeting\.started: accepted as meeting\.started \(evt_/);
    assert.equal(await statusText(), 'ended', 'a late event does not move the session back');
  });

  it('shows the transcript of a completion too big for one message', async () => {
    const big = bigV1Complete(bot, 200 * 1024);
    await relay.webhook(big);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'completed', null, { timeout: 5_000 });
    await page.waitForSelector('#transcript-panel:not([hidden])', { timeout: 5_000 });
    const paragraphs = await page.$$eval('#transcript p', (ps) => ps.length);
    assert.equal(paragraphs, big.data.transcript.length);
    const firstLine = await page.textContent('#transcript p');
    const words = big.data.transcript[0].words.map((w) => w.word).join(' ');
    assert.equal(firstLine, `${big.data.transcript[0].speaker}: ${words}`);
    mkdirSync(join(ROOT, 'target'), { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(ROOT, 'target', 'demo.png'), fullPage: true, timeout: 120_000 });
  });

  it('logged no page errors', () => {
    assert.deepEqual(problems, []);
  });
});

describe('demo page with real secrets (no development mode)', () => {
  const secret = 'client-secret-for-the-demo-test-7f3a';
  const env = { MEETINGBAAS_API_KEY: 'demo-test-api-key-91c2', RELAY_CLIENT_SECRET: secret };
  let relay;
  let context;
  let page;
  let profile;
  const problems = [];

  before(async () => {
    if (process.env.RELAY_WEB_DIR) env.RELAY_WEB_DIR = process.env.RELAY_WEB_DIR;
    relay = await Relay.start({ env });
    ({ profile, context, page } = await launch({ width: 390, height: 844 })); // a phone
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  });

  after(async () => {
    await context?.close();
    await relay?.dispose();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('asks for a token, then watches the bot with the one typed in', async () => {
    const bot = uniqueBot('secret');
    await page.goto(`${relay.base}/?bot=${bot}`);
    await page.waitForFunction(() => !document.getElementById('notice').hidden);
    assert.match(await page.textContent('#notice'), /Enter a client token/);
    assert.equal(await page.isVisible('#test-event'), false, 'no development helpers');
    assert.equal(await page.getAttribute('#connection', 'data-state'), 'idle');
    await page.fill('#token', mintToken(secret, bot));
    await page.click('#watch');
    await page.waitForSelector('#connection[data-state="open"]', { timeout: 10_000 });
    await relay.statusChange(bot, 'joining_call', 1);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'joining', null, { timeout: 1_000 });
    assert.equal(await page.isVisible('#status'), true);
  });

  it('takes a token from the URL fragment, and says when it does not allow the bot', async () => {
    const bot = uniqueBot('hash');
    await relay.statusChange(bot, 'in_call_recording', 1);
    await page.goto(`${relay.base}/?bot=${bot}#token=${mintToken(secret, bot)}`);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'recording', null, { timeout: 5_000 });
    const other = uniqueBot('other');
    await page.goto(`${relay.base}/?bot=${other}#token=${mintToken(secret, bot)}`);
    await page.waitForFunction(() => /does not allow this bot/.test(document.getElementById('notice').textContent), null, { timeout: 5_000 });
    await page.screenshot({ path: join(ROOT, 'target', 'demo-phone.png'), fullPage: true, timeout: 120_000 });
    assert.deepEqual(problems, []);
  });
});
