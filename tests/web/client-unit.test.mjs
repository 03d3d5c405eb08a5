// RelayClient on its own: a scripted WebSocket and a manual clock, no server. Covers what a real
// server cannot be made to do on demand: exact backoff delays, out-of-order and repeated seqs,
// gaps, rotation timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RelayClient, backoffDelay, httpBaseFromWsUrl, mergeFullEvent, DEFAULTS } from '../../web/client/relay-client.js';
import { MemoryStorage } from '../browser/support.mjs';

/** A manual clock: timers run only when the test advances time. */
function manualTimers() {
  let now = 0;
  let nextId = 0;
  const pending = new Map();
  const timers = {
    setTimeout(fn, ms) {
      pending.set(++nextId, { at: now + Math.max(0, ms), fn });
      return nextId;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    now: () => now,
  };
  async function flush() {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  }
  async function advance(ms) {
    const end = now + ms;
    await flush();
    for (;;) {
      let best = null;
      for (const [id, t] of pending) if (t.at <= end && (!best || t.at < best[1].at)) best = [id, t];
      if (!best) break;
      pending.delete(best[0]);
      now = best[1].at;
      best[1].fn();
      await flush();
    }
    now = end;
  }
  return { timers, advance, flush, pending };
}

/** A WebSocket class whose instances the test drives by hand. */
function scriptedSockets() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.closedWith = code ?? 1005;
    }
    // --- the test's side ---
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: '' });
    }
    fail() {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: '' });
    }
    subscribes() {
      return this.sent.filter((m) => m.action === 'subscribe');
    }
  }
  return { FakeSocket, sockets };
}

function event(bot, seq, extra = {}) {
  return {
    type: 'status_update',
    bot_id: bot,
    status: 'joining',
    timestamp: '2026-11-29T10:00:00.000Z',
    event: 'bot.status_change',
    source_event: 'bot.status_change',
    event_id: `evt_${bot}_${seq}`,
    seq,
    data: { bot_id: bot },
    ...extra,
  };
}

function harness(options = {}) {
  const clock = manualTimers();
  const { FakeSocket, sockets } = scriptedSockets();
  const delivered = [];
  const states = [];
  const errors = [];
  const client = new RelayClient({
    url: 'ws://relay.test/ws',
    token: 'tok',
    WebSocket: FakeSocket,
    storage: new MemoryStorage(),
    timers: clock.timers,
    random: () => 0.5,
    reconnectWhenOnline: false,
    onMessage: (m) => delivered.push(m),
    onStatus: (s, d) => states.push({ s, ...d }),
    onError: (e) => errors.push(e),
    ...options,
  });
  const seqs = (bot) => delivered.filter((m) => m.type === 'status_update' && m.bot_id === bot).map((m) => m.seq);
  return { client, clock, sockets, delivered, states, errors, seqs };
}

test('backoffDelay: exponential, full jitter, capped at 30 s', () => {
  const top = (n) => backoffDelay(n, { random: () => 0.999999 });
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 20, 1000].map(top),
    [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999, 29999],
  );
  assert.equal(backoffDelay(5, { random: () => 0 }), 0, 'full jitter reaches zero');
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(3, { baseDelayMs: 100, maxDelayMs: 500, random: () => 0.999999 }), 499);
  assert.equal(DEFAULTS.maxDelayMs, 30_000);
  // Jittered: many draws at one attempt spread over the whole range.
  const draws = Array.from({ length: 2000 }, () => backoffDelay(4));
  assert.ok(Math.min(...draws) < 800 && Math.max(...draws) > 7200, `spread: ${Math.min(...draws)}..${Math.max(...draws)}`);
  assert.ok(draws.every((d) => d >= 0 && d < 8000));
});

test('reconnect delays grow, are jittered with the given random, cap at 30 s, and reset after a stable connection', async () => {
  const randoms = [0.9, 0.1, 0.5, 0.7, 0.3, 0.99, 0.2, 0.8, 0.6, 0.4];
  let r = 0;
  const h = harness({ random: () => randoms[r++ % randoms.length] });
  h.client.subscribe('b1');
  await h.clock.flush();
  const delays = [];
  for (let i = 0; i < 10; i++) {
    h.sockets.at(-1).fail();
    const st = h.states.at(-1);
    delays.push(st.delayMs);
    await h.clock.advance(st.delayMs);
  }
  const expected = randoms.map((x, i) => Math.floor(x * Math.min(30_000, 500 * 2 ** i)));
  assert.deepEqual(delays, expected);
  assert.equal(h.sockets.length, 11, 'one dial per delay');
  assert.ok(h.states.every((s) => s.s === 'connecting'), 'never opened: still connecting');

  // A connection that stays up past resetBackoffAfterMs starts the backoff over.
  h.sockets.at(-1).open();
  assert.equal(h.client.state, 'open');
  await h.clock.advance(DEFAULTS.resetBackoffAfterMs + 1);
  h.sockets.at(-1).drop();
  const st = h.states.at(-1);
  assert.equal(st.s, 'reconnecting');
  assert.equal(st.delayMs, Math.floor(randoms[(r - 1) % randoms.length] * 500), 'attempt 0 again');
  h.client.close();
});

test('a connection that opens and dies at once does not reset the backoff', async () => {
  const h = harness({ random: () => 0.999999 });
  h.client.subscribe('b1');
  await h.clock.flush();
  const delays = [];
  for (let i = 0; i < 5; i++) {
    h.sockets.at(-1).open();
    h.sockets.at(-1).drop();
    delays.push(h.states.at(-1).delayMs);
    await h.clock.advance(h.states.at(-1).delayMs);
  }
  assert.deepEqual(delays, [499, 999, 1999, 3999, 7999]);
  h.client.close();
});

test('each seq is delivered once, in order, whatever the order and repeats on the wire', async () => {
  const h = harness();
  h.client.subscribe('b1');
  await h.clock.flush();
  const ws = h.sockets[0];
  ws.open();
  assert.deepEqual(ws.subscribes(), [{ action: 'subscribe', bot_id: 'b1' }], 'nothing remembered: snapshot');
  ws.receive({ type: 'connected', bot_id: 'b1' });
  ws.receive({ type: 'status_update', bot_id: 'b1', status: 'joining', last_updated: 'x', session: {}, seq: 2 });
  for (const s of [3, 3, 5, 4, 2, 1, 6, 5, 4, 7]) ws.receive(event('b1', s));
  assert.deepEqual(h.seqs('b1'), [2, 3, 4, 5, 6, 7]);
  assert.equal(h.delivered.filter((m) => m.type === 'connected').length, 1);
  assert.equal(h.client.lastSeq('b1'), 7);
  h.client.close();
});

test('a later seq waits for the missing one; a replay is asked for, then the gap is given up on', async () => {
  const h = harness({ gapTimeoutMs: 1000 });
  h.client.subscribe('b1', { since: 0 });
  await h.clock.flush();
  const ws = h.sockets[0];
  ws.open();
  assert.deepEqual(ws.subscribes(), [{ action: 'subscribe', bot_id: 'b1', since: 0 }]);
  ws.receive(event('b1', 1));
  ws.receive(event('b1', 3));
  assert.deepEqual(h.seqs('b1'), [1], '3 waits for 2');
  await h.clock.advance(999);
  ws.receive(event('b1', 2));
  assert.deepEqual(h.seqs('b1'), [1, 2, 3], 'the gap filled in time');

  ws.receive(event('b1', 5));
  await h.clock.advance(1000);
  assert.deepEqual(ws.subscribes().at(-1), { action: 'subscribe', bot_id: 'b1', since: 3 }, 'asks for a replay');
  assert.deepEqual(h.seqs('b1'), [1, 2, 3]);
  await h.clock.advance(1000);
  assert.deepEqual(h.seqs('b1'), [1, 2, 3, 5], 'seq 4 never came (expired): go on');
  assert.equal(h.errors.length, 1);
  h.client.close();
});

test('memory: a new client with the same storage resubscribes with since and drops what it saw', async () => {
  const storage = new MemoryStorage();
  const a = harness({ storage });
  a.client.subscribe('b1', { since: 0 });
  await a.clock.flush();
  a.sockets[0].open();
  for (const s of [1, 2, 3]) a.sockets[0].receive(event('b1', s));
  a.client.close();
  assert.equal(a.sockets[0].closedWith, 1000);

  const b = harness({ storage });
  b.client.subscribe('b1', { since: 0 });
  await b.clock.flush();
  b.sockets[0].open();
  assert.deepEqual(b.sockets[0].subscribes(), [{ action: 'subscribe', bot_id: 'b1', since: 3 }], 'memory wins over since');
  for (const s of [2, 3, 4, 5]) b.sockets[0].receive(event('b1', s));
  assert.deepEqual(b.seqs('b1'), [4, 5]);
  b.client.close();
});

test('reconnects after a drop and resubscribes from the last delivered seq, with a fresh token', async () => {
  let n = 0;
  const h = harness({ token: undefined, getToken: async () => `tok${++n}` });
  h.client.subscribe('b1');
  h.client.subscribe('b2', { since: 0 });
  await h.clock.flush();
  assert.match(h.sockets[0].url, /\?token=tok1$/);
  h.sockets[0].open();
  h.sockets[0].receive({ type: 'status_update', bot_id: 'b1', status: 'joining', last_updated: 'x', session: {}, seq: 4 });
  h.sockets[0].receive(event('b1', 5));
  h.sockets[0].receive(event('b2', 1));
  h.sockets[0].drop(1001);
  assert.equal(h.client.state, 'reconnecting');
  await h.clock.advance(h.states.at(-1).delayMs);
  assert.equal(h.sockets.length, 2);
  assert.match(h.sockets[1].url, /\?token=tok2$/, 'getToken before every connect');
  h.sockets[1].open();
  assert.deepEqual(h.sockets[1].subscribes(), [
    { action: 'subscribe', bot_id: 'b1', since: 5 },
    { action: 'subscribe', bot_id: 'b2', since: 1 },
  ]);
  assert.deepEqual(h.states.map((s) => s.s), ['connecting', 'open', 'reconnecting', 'open']);
  h.client.close();
  assert.equal(h.client.state, 'closed');
  await h.clock.advance(120_000);
  assert.equal(h.sockets.length, 2, 'no reconnect after close()');
});

test('pings on schedule; silence after a ping is a dead connection', async () => {
  const h = harness({ pingIntervalMs: 30_000, heartbeatTimeoutMs: 5_000 });
  h.client.subscribe('b1');
  await h.clock.flush();
  const ws = h.sockets[0];
  ws.open();
  await h.clock.advance(30_000);
  assert.deepEqual(ws.sent.at(-1), { action: 'ping' });
  await h.clock.advance(1_000);
  ws.receive({ type: 'heartbeat', timestamp: 'x' });
  await h.clock.advance(29_000);
  assert.equal(ws.sent.filter((m) => m.action === 'ping').length, 2);
  assert.equal(h.client.state, 'open', 'answered: alive');
  await h.clock.advance(5_000);
  assert.equal(h.client.state, 'reconnecting', 'unanswered: dead');
  assert.equal(ws.closedWith, 4000);
  assert.equal(h.states.at(-1).reason, 'no heartbeat');
  h.client.close();
});

test('before the connection lifetime ends, a new connection replaces the old one with no gap', async () => {
  const h = harness({ maxConnectionMs: 60_000, pingIntervalMs: 3_600_000 });
  h.client.subscribe('b1', { since: 0 });
  await h.clock.flush();
  const [old] = h.sockets;
  old.open();
  old.receive(event('b1', 1));
  await h.clock.advance(60_000);
  assert.equal(h.sockets.length, 2, 'a second connection is dialled');
  assert.equal(old.closedWith, null, 'the old one is kept until the new one is open');
  old.receive(event('b1', 2));
  h.sockets[1].open();
  assert.equal(old.closedWith, 1000);
  assert.deepEqual(h.sockets[1].subscribes(), [{ action: 'subscribe', bot_id: 'b1', since: 2 }]);
  h.sockets[1].receive(event('b1', 2));
  h.sockets[1].receive(event('b1', 3));
  assert.deepEqual(h.seqs('b1'), [1, 2, 3]);
  assert.ok(!h.states.some((s) => s.s === 'reconnecting'), 'a rotation is not a reconnect');
  h.client.close();
});

test('a truncated message is replaced by the whole event, and later seqs wait for it', async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, auth: init.headers.authorization });
    await gate;
    return {
      ok: true,
      status: 200,
      json: async () => ({
        event_id: 'evt_b1_2',
        payload: { event: 'complete', data: { bot_id: 'b1', mp4: 'https://x/v.mp4', transcript: [{ speaker: 'Ada', words: [{ word: 'hi' }] }] } },
      }),
    };
  };
  const h = harness({ fetch, httpBase: 'http://api.test/' });
  h.client.subscribe('b1', { since: 0 });
  await h.clock.flush();
  const ws = h.sockets[0];
  ws.open();
  ws.receive(event('b1', 1));
  ws.receive(event('b1', 2, { event: 'meeting.completed', status: 'completed', truncated: true, data: { bot_id: 'b1' } }));
  ws.receive(event('b1', 3));
  await h.clock.flush();
  assert.deepEqual(h.seqs('b1'), [1], 'seq 3 waits for the fetch of 2');
  assert.deepEqual(calls, [{ url: 'http://api.test/api/meeting-bot/b1/events/evt_b1_2', auth: 'Bearer tok' }]);
  release();
  await h.clock.flush();
  assert.deepEqual(h.seqs('b1'), [1, 2, 3]);
  const full = h.delivered.find((m) => m.seq === 2);
  assert.equal(full.truncated, undefined);
  assert.equal(full.data.mp4, 'https://x/v.mp4');
  assert.equal(full.data.transcript, undefined, 'the transcript moves to the top level');
  assert.deepEqual(full.transcript, [{ speaker: 'Ada', words: [{ word: 'hi' }] }]);
  h.client.close();
});

test('a whole event that cannot be fetched is retried, then delivered as it came', async () => {
  let calls = 0;
  const fetch = async () => {
    calls++;
    return { ok: false, status: 503, json: async () => ({}) };
  };
  const h = harness({ fetch, fetchAttempts: 3 });
  h.client.subscribe('b1', { since: 0 });
  await h.clock.flush();
  h.sockets[0].open();
  h.sockets[0].receive(event('b1', 1, { truncated: true }));
  h.sockets[0].receive(event('b1', 2));
  await h.clock.advance(10_000);
  assert.equal(calls, 3);
  assert.deepEqual(h.seqs('b1'), [1, 2]);
  assert.match(h.delivered.find((m) => m.seq === 1).fetch_error, /503/);
  h.client.close();
});

test('token_expired from the server gets a new connection with a fresh token', async () => {
  let n = 0;
  const h = harness({ token: undefined, getToken: () => `t${++n}` });
  h.client.subscribe('b1');
  await h.clock.flush();
  h.sockets[0].open();
  h.sockets[0].receive({ type: 'error', code: 'token_expired', message: 'token expired; reconnect with a fresh token' });
  await h.clock.flush();
  assert.equal(h.sockets.length, 2);
  assert.match(h.sockets[1].url, /token=t2$/);
  h.sockets[1].open();
  assert.equal(h.sockets[0].closedWith, 1000);
  assert.equal(h.client.state, 'open');
  h.client.close();
});

test('unavailable naming a confirmed bot: the subscribe is sent again, the other bot is left alone', async () => {
  const h = harness();
  h.client.subscribe('b1', { since: 0 });
  h.client.subscribe('b2', { since: 0 });
  await h.clock.flush();
  h.sockets[0].open();
  h.sockets[0].receive({ type: 'connected', bot_id: 'b1' });
  h.sockets[0].receive({ type: 'connected', bot_id: 'b2' });
  const before = h.sockets[0].subscribes().length;
  h.sockets[0].receive({ type: 'error', code: 'unavailable', message: 'try again', bot_id: 'b1' });
  await h.clock.advance(60_000);
  const again = h.sockets[0].subscribes().slice(before);
  assert.deepEqual(
    again.map((m) => m.bot_id),
    ['b1'],
    'only the failed bot is asked for again',
  );
  h.client.close();
});

test('unsubscribe stops delivery; helpers', async () => {
  const h = harness();
  h.client.subscribe('b1', { since: 0 });
  await h.clock.flush();
  h.sockets[0].open();
  h.sockets[0].receive(event('b1', 1));
  h.client.unsubscribe('b1');
  assert.deepEqual(h.sockets[0].sent.at(-1), { action: 'unsubscribe', bot_id: 'b1' });
  h.sockets[0].receive(event('b1', 2));
  assert.deepEqual(h.seqs('b1'), [1]);
  assert.equal(h.client.lastSeq('b1'), 1, 'remembered after unsubscribe');
  h.client.close();

  assert.equal(httpBaseFromWsUrl('ws://127.0.0.1:8000/ws'), 'http://127.0.0.1:8000');
  assert.equal(httpBaseFromWsUrl('wss://abc.execute-api.eu-west-1.amazonaws.com/prod'), 'https://abc.execute-api.eu-west-1.amazonaws.com');
  const merged = mergeFullEvent(event('b1', 9, { truncated: true, data: { bot_id: 'b1', kept: 1 } }), {
    payload: { event: 'bot.status_change', data: { bot_id: 'b1', participants: [1, 2] } },
  });
  assert.deepEqual(merged.data, { bot_id: 'b1', kept: 1, participants: [1, 2] });
  assert.equal('truncated' in merged, false);
  assert.throws(() => new RelayClient({ url: 'ws://x/ws', WebSocket: class {} }), /token/);
});

test('listSessions lists the newest sessions with the token and rejects with the status', async () => {
  const asked = [];
  const snapshot = { type: 'status_update', bot_id: 'b1', status: 'recording', last_updated: '2026-12-01T10:00:00.000Z', session: {}, seq: 3 };
  const answers = [
    { status: 200, body: { sessions: [snapshot] } },
    { status: 403, body: { error: 'the token does not allow this' } },
  ];
  const fetch = async (url, init) => {
    asked.push({ url, auth: init.headers.authorization });
    const a = answers.shift();
    return { ok: a.status < 400, status: a.status, json: async () => a.body };
  };
  const h = harness({ fetch });
  assert.deepEqual(await h.client.listSessions({ limit: 20 }), [snapshot]);
  assert.deepEqual(asked[0], { url: 'http://relay.test/api/meeting-bot/sessions?limit=20', auth: 'Bearer tok' });
  const refused = await h.client.listSessions().then(
    () => null,
    (e) => e,
  );
  assert.equal(refused?.status, 403);
  assert.match(refused.message, /HTTP 403: the token does not allow this/);
  assert.equal(asked[1].url, 'http://relay.test/api/meeting-bot/sessions');
  h.client.close();
});

test('getArtifacts asks the relay for fresh URLs with the token, and says why when refused', async () => {
  const asked = [];
  const answers = [
    { status: 200, body: { bot_id: 'b1', video: 'https://v/1', fetched_at: '2026-12-01T10:00:00.000Z' } },
    { status: 404, body: { error: 'MeetingBaaS does not know this bot' } },
  ];
  const fetch = async (url, init) => {
    asked.push({ url, auth: init.headers.authorization });
    const a = answers.shift();
    return { ok: a.status < 400, status: a.status, json: async () => a.body };
  };
  const h = harness({ fetch });
  const got = await h.client.getArtifacts('b1');
  assert.equal(got.video, 'https://v/1');
  assert.deepEqual(asked[0], { url: 'http://relay.test/api/meeting-bot/b1/artifacts', auth: 'Bearer tok' });
  await assert.rejects(h.client.getArtifacts('b 2'), /HTTP 404: MeetingBaaS does not know this bot/);
  assert.equal(asked[1].url, 'http://relay.test/api/meeting-bot/b%202/artifacts');
  h.client.close();
});
