// RelayClient against the real `relay serve` (debug build, development mode, a temporary data
// dir), over real sockets: restarts, disconnects, replays, truncated messages, rotation; and
// against a small `ws` server of our own that never answers pings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket, { WebSocketServer } from 'ws';
import { RelayClient } from '../../web/client/relay-client.js';
import { Relay, MemoryStorage, bigV1Complete, sleep, uniqueBot, waitFor } from '../browser/support.mjs';

/** A RelayClient on `relay`, recording what it delivers and its states. */
function watch(relay, bot, options = {}) {
  const delivered = [];
  const states = [];
  const errors = [];
  const client = new RelayClient({
    url: relay.wsUrl,
    getToken: () => relay.token(bot),
    WebSocket,
    storage: new MemoryStorage(),
    baseDelayMs: 100,
    maxDelayMs: 1_000,
    reconnectWhenOnline: false,
    onMessage: (m) => delivered.push(m),
    onStatus: (s, d) => states.push({ s, ...d, at: Date.now() }),
    onError: (e) => errors.push(e),
    ...options,
  });
  const events = () => delivered.filter((m) => m.type === 'status_update' && m.bot_id === bot && m.event_id);
  const seqs = () => events().map((m) => m.seq);
  const untilSeqs = (n, what) => waitFor(() => seqs().length >= n, { what: what ?? `${n} events (have ${seqs()})` });
  const untilState = (s, after = 0) =>
    waitFor(() => states.some((x, i) => i >= after && x.s === s), { what: `state ${s} (states: ${states.map((x) => x.s)})` });
  return { client, delivered, states, errors, events, seqs, untilSeqs, untilState };
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('live events arrive once, in seq order, and the last seq is remembered', async (t) => {
  const relay = await Relay.start();
  t.after(() => relay.dispose());
  const bot = uniqueBot('basic');
  const storage = new MemoryStorage();
  const w = watch(relay, bot, { storage });
  t.after(() => w.client.close());
  w.client.subscribe(bot, { since: 0 });
  await w.untilState('open');
  await waitFor(() => w.delivered.some((m) => m.type === 'connected'), { what: 'connected' });
  for (const [i, code] of ['joining_call', 'in_waiting_room', 'in_call_recording'].entries()) {
    await relay.statusChange(bot, code, i);
  }
  await w.untilSeqs(3);
  await sleep(300);
  assert.deepEqual(w.seqs(), [1, 2, 3]);
  assert.deepEqual(w.events().map((m) => m.status), ['joining', 'waiting', 'recording']);
  assert.equal(storage.getItem(`relay-client:${relay.wsUrl}:${bot}`), '3');
});

test('reconnects on its own after the server is killed and restarted on the same port and data dir', async (t) => {
  const relay = await Relay.start();
  t.after(() => relay.dispose());
  const bot = uniqueBot('restart');
  const w = watch(relay, bot);
  t.after(() => w.client.close());
  w.client.subscribe(bot, { since: 0 });
  await w.untilState('open');
  await relay.testEvent(bot, 'joining_call');
  await relay.testEvent(bot, 'meeting.started');
  await w.untilSeqs(2);

  const before = w.states.length;
  await relay.kill();
  await w.untilState('reconnecting', before);
  await sleep(500); // a few failed dials while it is down
  const started = Date.now();
  await relay.start();
  // Stored before the client is back: it must come through the replay, once.
  await relay.testEvent(bot, 'in_call_recording');
  await waitFor(() => w.states.at(-1).s === 'open', { what: 'open again' });
  await w.untilSeqs(3);
  const reconnectMs = Date.now() - started;
  await relay.testEvent(bot, 'call_ended');
  await w.untilSeqs(4);
  await sleep(300);
  assert.deepEqual(w.seqs(), [1, 2, 3, 4]);
  assert.deepEqual(w.events().map((m) => m.status), ['joining', 'in_call', 'recording', 'ended']);
  t.diagnostic(`back within ${reconnectMs} ms of the restart`);
  const dials = w.states.filter((s, i) => i >= before && s.delayMs !== undefined);
  assert.ok(dials.length >= 2, `it retried while the server was down (${dials.length} waits)`);
  assert.ok(dials.every((d) => d.delayMs >= 0 && d.delayMs < 1_000), 'within the configured cap');
});

test('events stored while disconnected arrive once, in order, after the reconnect', async (t) => {
  // The relay closes sockets idle for 1 s (the client never pings here). Each reconnect waits
  // in getToken until the test has stored three more events: they can only come by replay.
  const relay = await Relay.start({ args: ['--ws-idle-timeout', '1'] });
  t.after(() => relay.dispose());
  const bot = uniqueBot('gap');
  let dials = 0;
  let release = null;
  const w = watch(relay, bot, {
    pingIntervalMs: 3_600_000,
    getToken: async () => {
      if (++dials > 1) await new Promise((r) => (release = r));
      return relay.token(bot);
    },
  });
  t.after(() => {
    release?.();
    w.client.close();
  });
  w.client.subscribe(bot, { since: 0 });
  await w.untilState('open');
  await relay.statusChange(bot, 'joining_call', 0);
  await w.untilSeqs(1);
  let posted = 1;
  for (let round = 0; round < 2; round++) {
    const mark = w.states.length;
    await w.untilState('reconnecting', mark);
    await waitFor(() => release, { what: 'the next dial' });
    for (let i = 0; i < 3; i++) await relay.statusChange(bot, 'in_call_recording', posted++);
    assert.equal(w.client.state, 'reconnecting', 'posted while disconnected');
    const go = release;
    release = null;
    go();
    await w.untilState('open', mark);
  }
  await w.untilSeqs(posted);
  await sleep(500);
  assert.deepEqual(w.seqs(), range(1, posted), 'no gap, no duplicate');
});

test('a refresh (a new client on the same storage) gets exactly what it missed', async (t) => {
  const relay = await Relay.start();
  t.after(() => relay.dispose());
  const bot = uniqueBot('refresh');
  const storage = new MemoryStorage();
  const a = watch(relay, bot, { storage });
  a.client.subscribe(bot, { since: 0 });
  await a.untilState('open');
  await relay.statusChange(bot, 'joining_call', 0);
  await relay.statusChange(bot, 'in_waiting_room', 1);
  await a.untilSeqs(2);
  a.client.close();
  for (let i = 2; i < 5; i++) await relay.statusChange(bot, 'in_call_recording', i);
  const b = watch(relay, bot, { storage });
  t.after(() => b.client.close());
  b.client.subscribe(bot, { since: 0 });
  await b.untilSeqs(3);
  await relay.statusChange(bot, 'call_ended', 5);
  await b.untilSeqs(4);
  await sleep(300);
  assert.deepEqual(b.seqs(), [3, 4, 5, 6]);
});

test('a replayed seq is dropped: a socket that asks for too much and repeats every message', async (t) => {
  const relay = await Relay.start();
  t.after(() => relay.dispose());
  const bot = uniqueBot('dedupe');
  let sockets = 0;
  let rewound = 0;
  // At-least-once delivery at its worst: each frame twice, and every resubscribe rewound by 2
  // seqs so the relay replays events the client has already delivered.
  class Repeating extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets++;
    }
    set onmessage(fn) {
      super.onmessage = fn
        ? (ev) => {
            fn(ev);
            fn(ev);
          }
        : null;
    }
    get onmessage() {
      return super.onmessage;
    }
    send(data, ...rest) {
      const m = JSON.parse(data);
      if (m.action === 'subscribe' && m.since > 0) {
        m.since = Math.max(0, m.since - 2);
        rewound++;
      }
      super.send(JSON.stringify(m), ...rest);
    }
  }
  const w = watch(relay, bot, { WebSocket: Repeating, maxConnectionMs: 1_500 });
  t.after(() => w.client.close());
  w.client.subscribe(bot, { since: 0 });
  await w.untilState('open');
  for (let i = 0; i < 3; i++) await relay.statusChange(bot, 'in_call_recording', i);
  await w.untilSeqs(3);
  await waitFor(() => sockets >= 2 && rewound >= 1, { what: 'a rotation with a rewound since' });
  await sleep(300);
  for (let i = 3; i < 5; i++) await relay.statusChange(bot, 'in_call_recording', i);
  await w.untilSeqs(5);
  await sleep(500);
  assert.deepEqual(w.seqs(), [1, 2, 3, 4, 5]);
});

test('a truncated message is completed from the REST route, in order', async (t) => {
  const relay = await Relay.start();
  t.after(() => relay.dispose());
  const bot = uniqueBot('big');
  const frames = [];
  class Recording extends WebSocket {
    set onmessage(fn) {
      super.onmessage = fn
        ? (ev) => {
            frames.push(String(ev.data));
            fn(ev);
          }
        : null;
    }
    get onmessage() {
      return super.onmessage;
    }
  }
  const fetches = [];
  // A slow REST route, so that the next live event is there before the whole one.
  const slowFetch = async (url, init) => {
    fetches.push(url);
    await sleep(400);
    return fetch(url, init);
  };
  const w = watch(relay, bot, { WebSocket: Recording, fetch: slowFetch });
  t.after(() => w.client.close());
  w.client.subscribe(bot, { since: 0 });
  await w.untilState('open');
  await relay.statusChange(bot, 'call_ended', 0);
  const big = bigV1Complete(bot, 300 * 1024);
  const bodyBytes = JSON.stringify(big).length;
  const accepted = await relay.webhook(big);
  await relay.statusChange(bot, 'recording_done', 2);
  await w.untilSeqs(3);
  await sleep(300);
  assert.deepEqual(w.seqs(), [1, 2, 3], 'seq 3 waited for the whole seq 2');
  const wire = frames.map((f) => JSON.parse(f)).find((m) => m.seq === 2);
  assert.equal(wire.truncated, true, 'the relay truncated it on the wire');
  assert.ok(frames.every((f) => f.length < 128 * 1024));
  assert.ok(bodyBytes > 300 * 1024);
  const full = w.events()[1];
  assert.equal(full.event_id, accepted.event_id);
  assert.equal(full.event, 'meeting.completed');
  assert.equal(full.truncated, undefined);
  assert.deepEqual(full.transcript, big.data.transcript, 'the whole transcript');
  assert.equal(full.data.mp4, big.data.mp4);
  assert.deepEqual(full.data.extra, { customer: 'acme' });
  assert.deepEqual(fetches, [`${relay.base}/api/meeting-bot/${bot}/events/${accepted.event_id}`]);
});

test('a connection is replaced before its lifetime ends, with nothing lost or repeated', async (t) => {
  const relay = await Relay.start();
  t.after(() => relay.dispose());
  const bot = uniqueBot('rotate');
  let sockets = 0;
  class Counting extends WebSocket {
    constructor(...a) {
      super(...a);
      sockets++;
    }
  }
  const w = watch(relay, bot, { WebSocket: Counting, maxConnectionMs: 700 });
  t.after(() => w.client.close());
  w.client.subscribe(bot, { since: 0 });
  await w.untilState('open');
  // Events keep coming while the connection is replaced four times.
  let n = 0;
  const deadline = Date.now() + 60_000;
  while (sockets < 5) {
    assert.ok(Date.now() < deadline, `only ${sockets} connections in 60 s`);
    await relay.statusChange(bot, 'in_call_recording', n++);
    await sleep(40);
  }
  await relay.statusChange(bot, 'in_call_recording', n++);
  await w.untilSeqs(n);
  await sleep(300);
  assert.deepEqual(w.seqs(), range(1, n));
  assert.ok(!w.states.some((s) => s.s === 'reconnecting'), 'rotations are not reconnects');
});

test('a refused token is retried with backoff; getToken is asked again each time', async (t) => {
  const relay = await Relay.start();
  t.after(() => relay.dispose());
  const bot = uniqueBot('token');
  let asked = 0;
  const w = watch(relay, bot, {
    getToken: async () => (++asked <= 3 ? 'not-a-token' : relay.token(bot)),
    baseDelayMs: 50,
  });
  t.after(() => w.client.close());
  w.client.subscribe(bot);
  await w.untilState('open');
  assert.equal(asked, 4);
  assert.deepEqual(
    w.states.filter((s) => s.delayMs !== undefined).map((s) => s.s),
    ['connecting', 'connecting', 'connecting'],
    'three refused handshakes, three waits',
  );
  // Subscribed without since: the snapshot comes first.
  await waitFor(() => w.delivered.some((m) => m.type === 'status_update'), { what: 'snapshot' });
  const snap = w.delivered.find((m) => m.type === 'status_update');
  assert.deepEqual([snap.seq, snap.status, snap.event_id], [0, null, undefined]);
});

test('a server that never answers pings is treated as dead and reconnected to', async (t) => {
  let connections = 0;
  let pings = 0;
  const deaf = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  deaf.on('connection', (sock) => {
    connections++;
    sock.on('message', (m) => {
      const msg = JSON.parse(String(m));
      if (msg.action === 'ping') pings++;
      if (msg.action === 'subscribe') sock.send(JSON.stringify({ type: 'connected', bot_id: msg.bot_id }));
    });
  });
  await new Promise((r) => deaf.once('listening', r));
  t.after(() => new Promise((r) => deaf.close(r)));
  for (const s of deaf.clients) s.terminate();
  const url = `ws://127.0.0.1:${deaf.address().port}/ws`;
  const states = [];
  const client = new RelayClient({
    url,
    token: 't',
    WebSocket,
    storage: null,
    pingIntervalMs: 150,
    heartbeatTimeoutMs: 150,
    baseDelayMs: 50,
    reconnectWhenOnline: false,
    onStatus: (s, d) => states.push({ s, ...d }),
  });
  t.after(() => {
    client.close();
    for (const s of deaf.clients) s.terminate();
  });
  client.subscribe('b1');
  await waitFor(() => connections >= 3, { ms: 30_000, what: 'three connections' });
  assert.ok(pings >= 2);
  const dead = states.filter((s) => s.s === 'reconnecting');
  assert.ok(dead.length >= 2 && dead.every((s) => s.reason === 'no heartbeat'), JSON.stringify(states));
});

test('a server that answers pings keeps its one connection', async (t) => {
  let connections = 0;
  let pings = 0;
  const live = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  live.on('connection', (sock) => {
    connections++;
    sock.on('message', (m) => {
      if (JSON.parse(String(m)).action !== 'ping') return;
      pings++;
      sock.send(JSON.stringify({ type: 'heartbeat', timestamp: new Date().toISOString() }));
    });
  });
  await new Promise((r) => live.once('listening', r));
  const client = new RelayClient({
    url: `ws://127.0.0.1:${live.address().port}/ws`,
    token: 't',
    WebSocket,
    storage: null,
    pingIntervalMs: 100,
    heartbeatTimeoutMs: 2_000,
    reconnectWhenOnline: false,
  });
  t.after(async () => {
    client.close();
    for (const s of live.clients) s.terminate();
    await new Promise((r) => live.close(r));
  });
  client.subscribe('b1');
  await waitFor(() => pings >= 10, { ms: 30_000, what: 'ten pings' });
  assert.equal(connections, 1);
  assert.equal(client.state, 'open');
});
