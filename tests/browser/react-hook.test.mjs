// useBot (@meeting-relay/client/react) with React 19 in headless Chromium, against the real
// `relay serve`: a small app (tests/browser/react-app/app.jsx), bundled with esbuild into a temp
// dir at test time and served with a token route by a tiny Node server. The page wraps
// WebSocket to count sockets and the frames sent on them. Covers: two components on one bot
// share one socket and one subscribe frame; status, session (error, retry attempt), events,
// transcript, and a repeat that changes no status; resume after a dropped socket (the relay's
// DELETE /@connections/{id}) and after a relay restart, each event once; ref-counted
// unsubscribe; a refused bot's error.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { MANAGEMENT_HEADERS, Relay, ROOT, sleep, tempDir, uniqueBot, waitFor } from './support.mjs';
import { launch } from './chromium.mjs';

const T = { timeout: 30_000 }; // generous: a loaded 2-core machine

/** Counts sockets, frames sent and closes, before the app (and so RelayClient) starts. */
const WRAP_WEBSOCKET = `
  window.__ws = { created: 0, closed: 0, sent: [] };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      this.__n = ++window.__ws.created;
      this.addEventListener('close', () => { window.__ws.closed++; });
    }
    send(data) {
      window.__ws.sent.push({ ws: this.__n, frame: JSON.parse(data) });
      super.send(data);
    }
  };
`;

describe('useBot (React 19) in headless Chromium', () => {
  let relay;
  let server;
  let browser;
  let page;
  let out;
  let appJs;
  const A = uniqueBot('react-a');
  const B = uniqueBot('react-b');
  const C = uniqueBot('react-c');
  let n = 0;
  const post = (bot, code) => relay.statusChange(bot, code, n++);

  /** What a mounted component shows. */
  const view = (name) =>
    page.$eval(`section[data-name="${name}"]`, (el) => ({ ...el.dataset }));
  const until = (name, fn, what) =>
    waitFor(
      async () => {
        const v = await view(name).catch(() => null);
        return v && fn(v) ? v : null;
      },
      { ms: 30_000, what: `${name}: ${what}` },
    );
  const ws = () => page.evaluate(() => window.__ws);
  const frames = async (action, bot) => (await ws()).sent.filter((s) => s.frame.action === action && (!bot || s.frame.bot_id === bot));
  const setBots = (bots) => page.evaluate((b) => window.__setBots(b), bots);
  const seqs = (v) => (v.seqs ? v.seqs.split(',').map(Number) : []);
  const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

  before(async () => {
    out = tempDir('relay-react-app');
    await build({
      entryPoints: [join(ROOT, 'tests', 'browser', 'react-app', 'app.jsx')],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      jsx: 'automatic',
      define: { 'process.env.NODE_ENV': '"production"' },
      outfile: join(out, 'app.js'),
      absWorkingDir: ROOT,
      logLevel: 'silent',
    });
    appJs = readFileSync(join(out, 'app.js'), 'utf8');
    relay = await Relay.start();
    const html = `<!doctype html><meta charset="utf-8"><title>useBot test</title>
      <script>${WRAP_WEBSOCKET}</script><div id="root"></div><script type="module" src="/app.js"></script>`;
    server = createServer(async (req, res) => {
      const url = new URL(req.url, 'http://x');
      try {
        if (url.pathname === '/') {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
        } else if (url.pathname === '/app.js') {
          res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(appJs);
        } else if (url.pathname === '/token') {
          // "My backend": a token for every bot, from the relay's development helper.
          res.writeHead(200, { 'content-type': 'text/plain' }).end(await relay.token('*'));
        } else {
          res.writeHead(404).end();
        }
      } catch (e) {
        res.writeHead(502).end(String(e.message));
      }
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    browser = await launch();
    page = browser.page;
    await page.goto(`http://127.0.0.1:${server.address().port}/?relay=${encodeURIComponent(relay.wsUrl)}`);
    await page.waitForFunction(() => typeof window.__setBots === 'function', null, T);
  });

  after(async () => {
    await browser?.close();
    await new Promise((r) => (server ? server.close(r) : r()));
    await relay?.dispose();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('two components on one bot share one WebSocket and one subscribe frame', async () => {
    await setBots([
      { key: 'a1', id: A },
      { key: 'a2', id: A },
    ]);
    await until('a1', (v) => v.connection === 'open', 'open');
    await until('a2', (v) => v.connection === 'open', 'open');
    for (const code of ['joining_call', 'in_waiting_room', 'in_call_recording']) await post(A, code);
    for (const name of ['a1', 'a2']) {
      const v = await until(name, (x) => seqs(x).length >= 3, '3 events');
      assert.deepEqual(seqs(v), [1, 2, 3]);
      assert.equal(v.status, 'recording');
    }
    // A third component on another bot: the same socket, one more subscribe.
    await setBots([
      { key: 'a1', id: A },
      { key: 'a2', id: A },
      { key: 'b1', id: B },
    ]);
    await until('b1', (v) => v.connection === 'open', 'open');
    await post(B, 'joining_call');
    await until('b1', (v) => v.status === 'joining', 'joining');
    await sleep(300);
    const w = await ws();
    assert.equal(w.created, 1, 'one WebSocket for every component');
    assert.deepEqual(
      (await frames('subscribe')).map((s) => [s.ws, s.frame.bot_id, s.frame.since]),
      [
        [1, A, 0],
        [1, B, 0],
      ],
      'one subscribe per bot',
    );
  });

  it('shows status, session, events and transcript; a repeat is marked and changes no status', async () => {
    // A v2 bot that is rejected and retries: the attempt, then the error cleared.
    // MeetingBaaS's clock: after B's first signal (the relay orders signals by it).
    const t0 = Date.now();
    const at = (m) => new Date(t0 + m * 10).toISOString();
    const v2 = (code, m, extra = {}) =>
      relay.webhook({ event: 'bot.status_change', data: { bot_id: B, event_id: null, status: { code, created_at: at(m), ...extra } }, extra: {} });
    await v2('bot_rejected', 1);
    let b = await until('b1', (v) => v.status === 'ended', 'ended');
    assert.equal(b.sessionError, 'bot_rejected|null');
    await v2('retrying', 2, { attempt: 2, max: 3 });
    b = await until('b1', (v) => v.status === 'starting', 'starting');
    assert.equal(b.attempt, '2/3');
    assert.equal(b.sessionError, '');
    assert.match(await page.textContent('section[data-name="b1"]'), /attempt 2 of 3/);

    // A completes with a transcript; then the same outcome by another path is a repeat.
    await relay.webhook({
      event: 'complete',
      data: { bot_id: A, mp4: 'https://example.invalid/a.mp4', transcript: [{ speaker: 'Ada', words: [{ word: 'hello' }] }] },
    });
    let a = await until('a1', (v) => v.status === 'completed', 'completed');
    assert.ok(Number(a.transcript) > 0, 'transcript');
    await relay.webhook({ event: 'bot.completed', data: { bot_id: A, event_id: null, sent_at: new Date().toISOString() }, extra: {} });
    for (const name of ['a1', 'a2']) {
      a = await until(name, (v) => seqs(v).length >= 5, '5 events');
      assert.deepEqual(seqs(a), [1, 2, 3, 4, 5]);
      assert.equal(a.repeats, '5', 'the second completion is flagged as a repeat');
      assert.equal(a.status, 'completed');
      assert.equal(a.history.split(',').filter((s) => s === 'completed').length, 1, `${name}: completed shown once (${a.history})`);
    }
  });

  it('resumes after the relay drops the socket: what came meanwhile arrives once', async () => {
    const line = [...relay.output]
      .reverse()
      .map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return null;
        }
      })
      .find((l) => l?.message === 'websocket' && l.bot_id === A && /^subscribed/.test(l.outcome ?? ''));
    assert.ok(line?.connection_id, 'the subscribe of A is in the relay log');
    const before = (await ws()).created;
    const res = await fetch(`${relay.base}/@connections/${encodeURIComponent(line.connection_id)}`, { method: 'DELETE', headers: MANAGEMENT_HEADERS });
    assert.equal(res.status, 204);
    await until('a1', (v) => v.connection === 'reconnecting', 'reconnecting');
    // Stored while the page is away (it waits 1.5 s before dialling again).
    await post(A, 'transcribing');
    await post(B, 'joining_call');
    const a = await until('a1', (v) => v.connection === 'open' && seqs(v).length >= 6, 'open with 6 events');
    await until('b1', (v) => v.status === 'joining', 'joining again');
    await sleep(500);
    assert.deepEqual(seqs(await view('a1')), range(1, 6), 'once each, in order');
    assert.deepEqual(seqs(await view('a2')), range(1, 6));
    assert.equal(a.status, 'completed', 'a late signal does not reopen a completed bot');
    const w = await ws();
    assert.equal(w.created, before + 1, 'one new socket');
    const again = (await frames('subscribe')).filter((s) => s.ws === w.created);
    assert.deepEqual(
      again.map((s) => [s.frame.bot_id, s.frame.since]).sort(),
      [
        [A, 5],
        [B, 3],
      ].sort(),
      'one subscribe per bot on the new socket, from the last seq seen',
    );
  });

  it('reconnects after the relay is killed and restarted, each event once', async () => {
    const before = (await ws()).created;
    await relay.kill();
    await until('b1', (v) => v.connection === 'reconnecting', 'reconnecting');
    await sleep(1_000);
    await relay.start();
    await post(B, 'in_call_recording');
    const b = await until('b1', (v) => v.connection === 'open' && v.status === 'recording', 'recording after the restart');
    await sleep(500);
    assert.deepEqual(seqs(await view('b1')), range(1, 5));
    assert.deepEqual(seqs(await view('a1')), range(1, 6));
    assert.equal(b.error, '', 'no error left once back');
    const w = await ws();
    const newest = (await frames('subscribe')).filter((s) => s.ws === w.created);
    assert.ok(w.created > before, 'a new socket');
    assert.deepEqual(newest.map((s) => s.frame.bot_id).sort(), [A, B].sort(), 'one subscribe per bot');
  });

  it('the last component on a bot unsubscribes, once; the socket closes when nothing is followed', async () => {
    const sock = (await ws()).created;
    await setBots([
      { key: 'a2', id: A },
      { key: 'b1', id: B },
    ]);
    await sleep(800); // past lingerMs (300)
    assert.deepEqual(await frames('unsubscribe'), [], 'a2 still follows A');
    await setBots([{ key: 'b1', id: B }]);
    await waitFor(async () => (await frames('unsubscribe', A)).length === 1, { ms: 10_000, what: 'unsubscribe A' });
    await post(B, 'recording_paused');
    await until('b1', (v) => v.status === 'paused', 'paused');
    await setBots([]);
    await waitFor(async () => (await frames('unsubscribe', B)).length === 1, { ms: 10_000, what: 'unsubscribe B' });
    await waitFor(async () => (await ws()).closed >= sock, { ms: 10_000, what: 'the socket closed' });
    assert.equal((await frames('unsubscribe')).length, 2);
    // Mounted again: a new socket, the whole history again.
    await setBots([{ key: 'a3', id: A }]);
    const a = await until('a3', (v) => seqs(v).length >= 6, 'history again');
    assert.deepEqual(seqs(a), range(1, 6));
    assert.equal(a.repeats, '5');
    assert.equal((await ws()).created, sock + 1);
  });

  it('a bot its token does not name: the error, on a connection of its own', async () => {
    const other = await relay.token(uniqueBot('someone-else'));
    const before = (await ws()).created;
    await setBots([
      { key: 'a3', id: A },
      { key: 'c1', id: C, token: other },
    ]);
    const c = await until('c1', (v) => v.error !== '', 'an error');
    assert.equal(c.error, 'forbidden');
    assert.equal(c.status, '');
    assert.equal((await ws()).created, before + 1, 'another token provider, another socket');
    assert.equal((await view('a3')).error, '', 'the other bot is unaffected');
    await setBots([]);
  });

  it('logged no page errors', () => {
    assert.deepEqual(browser.problems, []);
  });
});
