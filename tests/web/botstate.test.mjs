// reduceBot (what a bot's messages add up to) and RelayClient's handling of repeats, without a
// server: the contract's example sequences, the error and retry attempt, MeetingBaaS's time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RelayClient,
  emptyBotState,
  errorOf,
  isRepeat,
  meetingBaasTime,
  reduceBot,
} from '../../web/client/relay-client.js';

const BOT = 'bot-1';
const T0 = Date.parse('2026-11-29T10:00:00Z');
const at = (minute) => new Date(T0 + minute * 60_000).toISOString();

let seq = 0;
/** An event message as the relay sends it (`status`: the session's status after it). */
function signal(code, status, minute, extra = {}) {
  seq += 1;
  return {
    type: 'status_update',
    bot_id: BOT,
    status,
    timestamp: new Date().toISOString(),
    event: 'bot.status_change',
    source_event: 'bot.status_change',
    event_id: `evt_${seq}`,
    seq,
    status_code: code,
    data: { bot_id: BOT, status: { code, created_at: at(minute), ...extra } },
  };
}
function outcome(event, status, data, more = {}) {
  seq += 1;
  return {
    type: 'status_update',
    bot_id: BOT,
    status,
    timestamp: new Date().toISOString(),
    event,
    source_event: event,
    event_id: `evt_${seq}`,
    seq,
    data: { bot_id: BOT, ...data },
    ...more,
  };
}
const run = (msgs) => msgs.reduce((s, m) => reduceBot(s, m), null);

test('joining, recording, bot_removed, complete: completed with no error', () => {
  const s = run([
    signal('joining_call', 'joining', 0),
    signal('in_call_recording', 'recording', 1),
    signal('bot_removed', 'ended', 2),
    outcome('meeting.completed', 'completed', { mp4: 'x' }, { transcript: [{ speaker: 'A', words: [] }] }),
  ]);
  assert.equal(s.status, 'completed');
  assert.equal(s.session.error, null, 'the recording exists: a failure signal is no error then');
  assert.deepEqual(s.transcript, [{ speaker: 'A', words: [] }]);
  assert.equal(s.events.length, 4);
  assert.equal(s.session.status_code, 'bot_removed');
});

test('a rejected v2 bot that retries: attempt 2 of 3, error cleared, then recording', () => {
  const msgs = [
    signal('queued', 'starting', 0),
    signal('joining_call', 'joining', 1),
    signal('bot_rejected', 'ended', 2),
  ];
  let s = run(msgs);
  assert.equal(s.status, 'ended');
  assert.deepEqual(s.session.error, { code: 'bot_rejected', message: null });
  s = reduceBot(s, signal('retrying', 'starting', 3, { attempt: 2, max: 3 }));
  assert.equal(s.status, 'starting');
  assert.deepEqual([s.session.attempt, s.session.max, s.session.error], [2, 3, null]);
  s = reduceBot(s, signal('joining_call', 'joining', 4));
  s = reduceBot(s, signal('in_call_recording', 'recording', 5));
  assert.equal(s.status, 'recording');
  assert.deepEqual([s.session.attempt, s.session.max], [2, 3], 'kept, as the relay keeps them');
});

test('joining, waiting_room_timeout, bot.failed: failed with the v2 error code and message', () => {
  let s = run([signal('joining_call', 'joining', 0), signal('waiting_room_timeout', 'ended', 1)]);
  assert.deepEqual(s.session.error, { code: 'waiting_room_timeout', message: null });
  s = reduceBot(
    s,
    outcome('meeting.failed', 'failed', { error_code: 'BOT_NOT_ACCEPTED', error_message: 'Not let in', sent_at: at(2) }),
  );
  assert.equal(s.status, 'failed');
  assert.deepEqual(s.session.error, { code: 'BOT_NOT_ACCEPTED', message: 'Not let in' });
});

test('a repeat is kept among the events, flagged, and changes neither status nor session', () => {
  const first = outcome('meeting.completed', 'completed', { sent_at: at(5) });
  let s = run([signal('in_call_recording', 'recording', 0), first]);
  const before = s;
  // Even a repeat that says another status does not change the one shown.
  const again = outcome('meeting.failed', 'failed', { error_code: 'X' }, { repeat: true, repeat_of: first.event_id });
  s = reduceBot(s, again);
  assert.equal(s.status, 'completed');
  assert.equal(s.session.status, 'completed');
  assert.equal(s.session.error, null);
  assert.equal(s.events.at(-1), again);
  assert.equal(s.events.length, before.events.length + 1);
  assert.equal(isRepeat(again), true);
  assert.equal(isRepeat({ repeat_of: 'evt_1' }), true);
  assert.equal(isRepeat(first), false);
});

test('a snapshot is taken as it is; later events keep it up to date', () => {
  const snap = {
    type: 'status_update',
    bot_id: BOT,
    status: 'starting',
    last_updated: at(3),
    session: {
      status: 'starting',
      status_code: 'retrying',
      last_event: 'bot.status_change',
      last_event_id: 'evt_9',
      meeting_started: false,
      error: null,
      attempt: 3,
      max: 3,
      created_at: at(0),
      last_updated: at(3),
    },
    seq: 9,
  };
  let s = reduceBot(emptyBotState(BOT), snap);
  assert.equal(s.status, 'starting');
  assert.deepEqual([s.session.attempt, s.session.max], [3, 3]);
  assert.equal(s.events.length, 0);
  s = reduceBot(s, outcome('meeting.failed', 'failed', { error: 'CannotJoinMeeting', message: 'gone' }));
  assert.deepEqual(s.session.error, { code: 'CannotJoinMeeting', message: 'gone' });
  assert.equal(s.session.created_at, at(0));
});

test("meetingBaasTime and errorOf read MeetingBaaS's own fields", () => {
  assert.equal(meetingBaasTime(signal('joining_call', 'joining', 7)), at(7));
  assert.equal(meetingBaasTime(outcome('meeting.failed', 'failed', { sent_at: at(8) })), at(8));
  assert.equal(meetingBaasTime(outcome('meeting.completed', 'completed', {})), null);
  assert.deepEqual(errorOf({ data: { status: { error_type: 'MEET_LOGIN_REQUIRED', error_message: 'log in' } } }), {
    code: 'MEET_LOGIN_REQUIRED',
    message: 'log in',
  });
  assert.equal(errorOf({ data: {} }), null);
});

test('maxEvents bounds the events kept; 0 keeps none', () => {
  let s = null;
  for (let i = 0; i < 5; i++) s = reduceBot(s, signal('in_call_recording', 'recording', i), { maxEvents: 3 });
  assert.deepEqual(
    s.events.map((e) => e.seq),
    [seq - 2, seq - 1, seq],
  );
  const none = reduceBot(null, signal('joining_call', 'joining', 9), { maxEvents: 0 });
  assert.deepEqual(none.events, []);
  assert.equal(none.status, 'joining');
});

test('RelayClient delivers a repeat flagged as one and keeps its status', async () => {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
      queueMicrotask(() => {
        this.readyState = 1;
        this.onopen?.();
      });
    }
    send(d) {
      this.sent.push(JSON.parse(d));
    }
    close() {
      this.readyState = 3;
    }
    push(m) {
      this.onmessage?.({ data: JSON.stringify(m) });
    }
  }
  const delivered = [];
  const client = new RelayClient({
    url: 'ws://relay.test/ws',
    token: 't',
    WebSocket: FakeSocket,
    storage: null,
    reconnectWhenOnline: false,
    pingIntervalMs: 3_600_000,
    onMessage: (m) => delivered.push(m),
  });
  client.subscribe(BOT, { since: 0 });
  for (let i = 0; i < 5 && !sockets[0]?.sent.length; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(sockets[0].sent, [{ action: 'subscribe', bot_id: BOT, since: 0 }]);
  const ws = sockets[0];
  const mk = (n, status, more = {}) => ({
    type: 'status_update',
    bot_id: BOT,
    status,
    timestamp: at(n),
    event: n === 1 ? 'bot.status_change' : 'meeting.completed',
    source_event: 'x',
    event_id: `evt_c${n}`,
    seq: n,
    data: {},
    ...more,
  });
  ws.push({ type: 'connected', bot_id: BOT });
  ws.push(mk(1, 'recording'));
  ws.push(mk(2, 'completed'));
  // Only `repeat_of` on the wire, and a status of its own: still not a new status.
  ws.push(mk(3, 'failed', { repeat_of: 'evt_c2' }));
  const events = delivered.filter((m) => m.event_id);
  assert.deepEqual(
    events.map((m) => [m.seq, m.repeat === true]),
    [
      [1, false],
      [2, false],
      [3, true],
    ],
  );
  const state = client.bot(BOT);
  assert.equal(state.status, 'completed');
  assert.equal(state.events.length, 3);
  assert.equal(state.events[2].repeat, true);
  client.close();
  assert.equal(client.bot(BOT).status, 'completed', 'close keeps the last state readable');
});
