// relay-client.js: the browser (and Node) client of meeting-relay's live updates; the main entry
// of the npm package @meeting-relay/client (web/client/), served by `relay serve` at
// /relay-client.js. Its React hook is the package's `@meeting-relay/client/react` (react.js).
//
// An ES module with no dependencies. It keeps one WebSocket to the relay, (re)subscribes to the
// bots you ask for, and hands your `onMessage` every contract message once, in `seq` order per
// bot, across reconnects, server restarts and page refreshes:
//
//   import { RelayClient } from '/relay-client.js';
//   const client = new RelayClient({
//     url: 'ws://127.0.0.1:8000/ws',
//     getToken: async () => (await fetch('/my-backend/relay-token')).text(),
//     onMessage: (msg) => console.log(msg),
//     onStatus: (state) => console.log(state),   // connecting | open | reconnecting | closed
//   });
//   client.subscribe('test-123');
//
// What it does for you:
// - remembers the last delivered `seq` of each bot in `storage` (sessionStorage by default) and
//   subscribes with `since`, so a reconnect or a refresh replays exactly what was missed;
// - drops a `seq` already delivered (delivery is at least once) and holds back a later `seq`
//   until the ones before it have arrived (a replay and live events can interleave);
// - fetches the whole event over REST when a message says `"truncated": true`, and delivers it
//   in its place, in order;
// - reconnects after any close it did not ask for, with exponential backoff and full jitter;
// - pings every `pingIntervalMs` and treats a connection that stays silent for
//   `heartbeatTimeoutMs` after a ping as dead;
// - replaces the connection before API Gateway's 2-hour limit (`maxConnectionMs`), opening the
//   new one before closing the old one;
// - keeps what it has seen of each bot as a `BotState` (`client.bot(id)`, `reduceBot`): status,
//   session (outcome, error, retry attempt), events and transcript. A repeat (`"repeat": true`:
//   an outcome the session already had, by another path) is delivered to `onMessage` flagged as
//   such and kept among the events, but it never changes the status.

/** Defaults of every tunable option. */
export const DEFAULTS = Object.freeze({
  pingIntervalMs: 30_000,
  heartbeatTimeoutMs: 10_000,
  maxConnectionMs: 115 * 60_000, // API Gateway closes every WebSocket after 2 hours
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  connectTimeoutMs: 15_000,
  resetBackoffAfterMs: 5_000,
  gapTimeoutMs: 2_000,
  fetchAttempts: 6,
  maxEvents: 500,
});

const OPEN = 1; // WebSocket.OPEN, the same in browsers and in the `ws` package
const TRANSCRIPT_EVENTS = new Set(['meeting.completed', 'transcription.available']);

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential backoff with full jitter,
 * a random time between 0 and min(maxDelayMs, baseDelayMs * 2^attempt).
 */
export function backoffDelay(attempt, options = {}) {
  const base = options.baseDelayMs ?? DEFAULTS.baseDelayMs;
  const cap = options.maxDelayMs ?? DEFAULTS.maxDelayMs;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}

/**
 * The HTTP origin of the REST routes for a WebSocket URL: `ws://host:port/ws` →
 * `http://host:port`, `wss://…` → `https://…`. On AWS the WebSocket API and the REST API have
 * different hosts: pass `httpBase` to the client there.
 */
export function httpBaseFromWsUrl(url) {
  const u = new URL(url);
  const scheme = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  return `${scheme}//${u.host}`;
}

function defaultStorage() {
  try {
    const s = globalThis.sessionStorage;
    if (s) {
      const probe = '__relay_client_probe__';
      s.setItem(probe, '1');
      s.removeItem(probe);
      return s;
    }
  } catch {
    // Storage disabled (privacy mode, sandboxed frame): run without memory.
  }
  return null;
}

function isSeq(n) {
  return Number.isSafeInteger(n) && n >= 0;
}

/**
 * Turns the REST route's whole event into the live message it stands for: `payload.data` is
 * merged into the message's `data`, and a completion's transcript goes to `transcript`, as the
 * server does for a message that fits.
 */
export function mergeFullEvent(message, full) {
  const payload = full && typeof full === 'object' ? full.payload : undefined;
  let data;
  if (payload && typeof payload === 'object' && !Array.isArray(payload)) {
    const inner = payload.data;
    if (inner && typeof inner === 'object' && !Array.isArray(inner)) data = { ...inner };
    else if (inner !== undefined) data = { data: inner };
    else data = { ...payload };
  } else {
    data = {};
  }
  const merged = { ...message, data: { ...(message.data || {}), ...data } };
  if (TRANSCRIPT_EVENTS.has(message.event)) {
    const t = data.transcript ?? data.transcription;
    if (t !== undefined && t !== null) {
      merged.transcript = t;
      delete merged.data.transcript;
      delete merged.data.transcription;
    }
  }
  delete merged.truncated;
  return merged;
}

// --- what a bot's messages add up to ------------------------------------------------------

/** The signal codes that take a bot out of the call as a failure (their code is the provisional error). */
const FAILURE_SIGNALS = new Set([
  'bot_rejected',
  'bot_removed',
  'bot_removed_too_early',
  'waiting_room_timeout',
  'invalid_meeting_url',
  'meeting_error',
]);
const FINAL = new Set(['completed', 'failed']);

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function textOrNull(v) {
  return typeof v === 'string' && v !== '' ? v : null;
}

/** Whether a message reports an outcome the session already had (it changes nothing). */
export function isRepeat(msg) {
  return !!msg && (msg.repeat === true || (typeof msg.repeat_of === 'string' && msg.repeat_of !== ''));
}

/**
 * MeetingBaaS's own time of an event (RFC 3339, as sent): `data.status.created_at` of a status
 * change, else `data.sent_at` of an outcome; null when it gave none. (`timestamp` is when the
 * relay received it.)
 */
export function meetingBaasTime(msg) {
  const d = isObject(msg?.data) ? msg.data : null;
  if (!d) return null;
  const st = isObject(d.status) ? d.status : null;
  return textOrNull(st?.created_at) ?? textOrNull(d.sent_at) ?? textOrNull(d.updated_at) ?? null;
}

/** The error a message's data reports, as `{code, message}`, or null (same fields as the relay reads). */
export function errorOf(msg) {
  const d = isObject(msg?.data) ? msg.data : {};
  const st = isObject(d.status) ? d.status : {};
  const code = textOrNull(d.error_code) ?? textOrNull(d.error) ?? textOrNull(st.error_type) ?? textOrNull(st.error_code);
  const message = textOrNull(d.error_message) ?? textOrNull(d.message) ?? textOrNull(st.error_message);
  return code || message ? { code, message } : null;
}

function instant(iso) {
  if (typeof iso !== 'string') return -Infinity;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? -Infinity : t;
}

/** A bot before any message. */
export function emptyBotState(botId) {
  return {
    bot_id: botId,
    status: null,
    session: null,
    events: [],
    transcript: null,
    seq: null,
    // How `session.error`, `attempt` and `max` are worked out between snapshots (private).
    lifecycle: { retry: null, failure: null, outcomeError: null, codeAt: -Infinity },
  };
}

function sessionError(status, l) {
  const provisional = l.failure && (!l.retry || l.failure.at > l.retry.at) ? l.failure.error : null;
  if (status === 'completed') return l.outcomeError;
  if (status === 'failed') return l.outcomeError ?? provisional;
  return provisional;
}

/**
 * What a bot's state becomes with one more message of it (a snapshot or an event, in seq order
 * as the client delivers them): a pure function, so a page can keep (and remember) its own.
 * The status is the relay's (`status` of the message: the session's status after that event);
 * a repeat is kept among the events but changes neither the status nor the session. The error
 * and the retry attempt follow the relay's rules for what events carry (a snapshot's session
 * is taken as it is).
 */
export function reduceBot(state, msg, { maxEvents = DEFAULTS.maxEvents } = {}) {
  if (!msg || msg.type !== 'status_update') return state;
  const prev = state ?? emptyBotState(msg.bot_id);
  if (!(typeof msg.event_id === 'string' && msg.event_id !== '')) {
    // A snapshot: the session as the relay has it.
    const s = isObject(msg.session) ? msg.session : null;
    const l = { retry: null, failure: null, outcomeError: null, codeAt: -Infinity };
    if (s) {
      if (s.attempt != null) l.retry = { at: -Infinity, attempt: s.attempt ?? null, max: s.max ?? null };
      if (s.error) {
        if (FINAL.has(s.status)) l.outcomeError = s.error;
        else l.failure = { at: Number.MIN_SAFE_INTEGER, error: s.error };
      }
    }
    return {
      ...prev,
      status: msg.status ?? prev.status,
      session: s ? { ...s, error: s.error ?? null, attempt: s.attempt ?? null, max: s.max ?? null } : prev.session,
      seq: msg.seq ?? prev.seq,
      lifecycle: s ? l : prev.lifecycle,
    };
  }
  const repeat = isRepeat(msg);
  let events = prev.events;
  if (maxEvents > 0) {
    events = [...prev.events, msg];
    if (events.length > maxEvents) events.splice(0, events.length - maxEvents);
  }
  const transcript = msg.transcript != null ? msg.transcript : prev.transcript;
  const base = prev.session ?? {
    status: null,
    status_code: null,
    last_event: null,
    last_event_id: null,
    meeting_started: false,
    error: null,
    attempt: null,
    max: null,
    created_at: msg.timestamp ?? null,
    last_updated: msg.timestamp ?? null,
  };
  const lastUpdated =
    base.last_updated && msg.timestamp && instant(base.last_updated) > instant(msg.timestamp) ? base.last_updated : (msg.timestamp ?? base.last_updated);
  if (repeat) {
    // An outcome the session had already: not news. Kept among the events, flagged.
    return {
      ...prev,
      events,
      transcript,
      seq: msg.seq,
      session: { ...base, last_event: msg.event ?? base.last_event, last_event_id: msg.event_id, last_updated: lastUpdated },
    };
  }
  const status = msg.status ?? prev.status;
  const l = { ...prev.lifecycle };
  const at = instant(meetingBaasTime(msg));
  const code = textOrNull(msg.status_code);
  let statusCode = base.status_code;
  if (code) {
    if (at >= l.codeAt) {
      statusCode = code;
      l.codeAt = at;
    }
    if (code === 'retrying') {
      const st = isObject(msg.data?.status) ? msg.data.status : {};
      if (!l.retry || at >= l.retry.at) {
        l.retry = { at, attempt: Number.isFinite(st.attempt) ? st.attempt : null, max: Number.isFinite(st.max) ? st.max : null };
      }
    } else if (FAILURE_SIGNALS.has(code)) {
      const reported = errorOf(msg) ?? { code: null, message: null };
      if (!l.failure || at >= l.failure.at) {
        l.failure = { at, error: { code: reported.code ?? code, message: reported.message ?? null } };
      }
    }
  }
  const failureOutcome = msg.event === 'meeting.failed' || (msg.event === 'bot.reconciled' && status === 'failed' && prev.status !== 'failed');
  if (failureOutcome && l.outcomeError === null) l.outcomeError = errorOf(msg);
  const session = {
    ...base,
    status,
    status_code: statusCode,
    last_event: msg.event ?? base.last_event,
    last_event_id: msg.event_id,
    meeting_started: base.meeting_started || msg.event === 'meeting.started',
    error: sessionError(status, l),
    attempt: l.retry ? l.retry.attempt : null,
    max: l.retry ? l.retry.max : null,
    last_updated: lastUpdated,
  };
  return { ...prev, status, session, events, transcript, seq: msg.seq, lifecycle: l };
}

export class RelayClient {
  /** @param {import('./relay-client').RelayClientOptions} options */
  constructor(options = {}) {
    if (!options.url) throw new TypeError('RelayClient: `url` is required (e.g. ws://127.0.0.1:8000/ws)');
    if (options.token == null && typeof options.getToken !== 'function') {
      throw new TypeError('RelayClient: give `token` or `getToken`');
    }
    this.url = options.url;
    this.httpBase = (options.httpBase ?? httpBaseFromWsUrl(options.url)).replace(/\/+$/, '');
    this._token = options.token ?? null;
    this._getToken = typeof options.getToken === 'function' ? options.getToken : null;
    this._onMessage = options.onMessage ?? (() => {});
    this._onStatus = options.onStatus ?? (() => {});
    this._onError = options.onError ?? null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('RelayClient: no WebSocket here; pass one (e.g. the `ws` package) as `WebSocket`');
    }
    this._fetch = options.fetch ?? ((...a) => globalThis.fetch(...a));
    this._storage = options.storage === undefined ? defaultStorage() : options.storage;
    this._storageKey = options.storageKey ?? `relay-client:${this.url.split('?')[0]}`;
    const t = options.timers ?? {};
    this._setTimeout = t.setTimeout ?? ((f, ms) => globalThis.setTimeout(f, ms));
    this._clearTimeout = t.clearTimeout ?? ((id) => globalThis.clearTimeout(id));
    this._now = t.now ?? (() => Date.now());
    this._random = options.random ?? Math.random;
    this.options = {};
    for (const k of Object.keys(DEFAULTS)) this.options[k] = options[k] ?? DEFAULTS[k];

    this._bots = new Map(); // bot id -> per-bot state
    this._conn = null; // the open connection that carries the subscriptions
    this._pending = null; // a connection being dialled (first connect, reconnect or rotation)
    this._attempt = 0; // failed dials since the last stable connection
    this._retryTimer = null;
    this._state = 'idle';
    this._closed = false;
    this._started = false;
    this._everOpened = false;
    this._lastToken = this._token;

    this._onOnline = () => this._dialNow();
    if (options.reconnectWhenOnline !== false && typeof globalThis.addEventListener === 'function') {
      globalThis.addEventListener('online', this._onOnline);
    }
  }

  /** connecting | open | reconnecting | closed (idle before the first subscribe). */
  get state() {
    return this._state;
  }

  /**
   * What the messages delivered for `botId` since it was subscribed add up to (`reduceBot`), or
   * null when it is not subscribed. A new object after every message.
   */
  bot(botId) {
    const b = this._bots.get(botId);
    return b ? b.state : null;
  }

  /** The last `seq` delivered for `botId`, or null when nothing was delivered nor remembered. */
  lastSeq(botId) {
    const b = this._bots.get(botId);
    return b ? b.last : this._load(botId);
  }

  /**
   * Follows a bot. With nothing remembered for it, `since` says where to start: omitted, the
   * server's snapshot of the session then live events; a number N, every stored event after N.
   */
  subscribe(botId, { since } = {}) {
    if (this._closed) throw new Error('RelayClient: closed');
    if (typeof botId !== 'string' || botId === '') throw new TypeError('RelayClient: bot id must be a non-empty string');
    if (this._bots.has(botId)) return;
    let last = this._load(botId);
    if (last === null && since != null) {
      if (!isSeq(since)) throw new TypeError('RelayClient: since must be a whole number');
      last = since;
    }
    const b = {
      id: botId,
      last,
      awaitingSnapshot: last === null,
      queue: [],
      busy: false,
      gapTimer: null,
      gapResubscribed: false,
      state: emptyBotState(botId),
    };
    this._bots.set(botId, b);
    if (this._conn) this._sendSubscribe(this._conn, b);
    this._start();
  }

  /** Stops following a bot. Its remembered seq stays, for a later subscribe. */
  unsubscribe(botId) {
    const b = this._bots.get(botId);
    if (!b) return;
    this._clearGap(b);
    this._bots.delete(botId);
    if (this._conn) this._send(this._conn, { action: 'unsubscribe', bot_id: botId });
  }

  /** Closes the connection for good: no reconnect. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._retryTimer !== null) this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
    for (const b of this._bots.values()) this._clearGap(b);
    for (const c of [this._conn, this._pending]) if (c) this._retire(c, 1000, 'client closed');
    this._conn = this._pending = null;
    if (typeof globalThis.removeEventListener === 'function') {
      globalThis.removeEventListener('online', this._onOnline);
    }
    this._setState('closed');
  }

  // --- connection -------------------------------------------------------------------------

  _start() {
    if (this._started || this._closed) return;
    this._started = true;
    this._dial();
  }

  _setState(state, detail = {}) {
    // A change of state, or a new wait before the next dial (so a page can count it down).
    if (state === this._state && detail.delayMs === undefined) return;
    this._state = state;
    try {
      this._onStatus(state, detail);
    } catch (e) {
      this._report(e);
    }
  }

  _report(err) {
    if (this._onError) {
      try {
        this._onError(err);
      } catch {
        /* the error handler itself failed: nothing more to do */
      }
    }
  }

  /** Skips the backoff wait (the browser says it is back online). */
  _dialNow() {
    if (this._closed || !this._started || this._conn || this._pending) return;
    if (this._retryTimer !== null) this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._dial();
  }

  async _dial() {
    if (this._closed || this._pending) return;
    const rotation = this._conn !== null;
    if (!rotation) this._setState(this._everOpened ? 'reconnecting' : 'connecting', { attempt: this._attempt });
    const conn = { ws: null, opened: false, openedAt: 0, timers: new Set(), lastMessageAt: 0, retired: false, confirmed: new Set() };
    this._pending = conn;
    let token;
    try {
      token = this._getToken ? await this._getToken() : this._token;
      if (typeof token !== 'string' || token === '') throw new Error('getToken() gave no token');
    } catch (e) {
      if (this._pending !== conn) return;
      this._report(e);
      this._pending = null;
      this._dialFailed(rotation);
      return;
    }
    if (this._closed || this._pending !== conn) return;
    this._lastToken = token;
    const sep = this.url.includes('?') ? '&' : '?';
    let ws;
    try {
      ws = new this._WebSocket(`${this.url}${sep}token=${encodeURIComponent(token)}`);
    } catch (e) {
      this._report(e);
      this._pending = null;
      this._dialFailed(rotation);
      return;
    }
    conn.ws = ws;
    this._timer(conn, this.options.connectTimeoutMs, () => {
      if (!conn.opened) this._lost(conn, 'connect timeout');
    });
    ws.onopen = () => this._opened(conn);
    ws.onmessage = (ev) => this._message(conn, ev.data);
    ws.onclose = (ev) => this._lost(conn, `closed ${ev?.code ?? ''} ${ev?.reason ?? ''}`.trim(), ev?.code);
    ws.onerror = () => {
      // Browsers give no detail; a close event follows. Some implementations do not send one
      // for a failed handshake, so treat an error before open as the end of this attempt.
      if (!conn.opened) this._lost(conn, 'connection error');
    };
  }

  _dialFailed(rotation) {
    if (this._closed) return;
    if (rotation && this._conn) {
      // The old connection still works: try the rotation again a little later.
      const delay = backoffDelay(this._attempt++, { ...this.options, random: this._random });
      this._timer(this._conn, Math.max(delay, 1000), () => this._dial());
      return;
    }
    const delay = backoffDelay(this._attempt, { ...this.options, random: this._random });
    this._attempt += 1;
    this._setState(this._everOpened ? 'reconnecting' : 'connecting', { attempt: this._attempt, delayMs: delay });
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      this._dial();
    }, delay);
  }

  _opened(conn) {
    if (this._closed || conn.retired || this._pending !== conn) return;
    conn.opened = true;
    conn.openedAt = this._now();
    conn.lastMessageAt = conn.openedAt;
    this._pending = null;
    const old = this._conn;
    this._conn = conn;
    this._everOpened = true;
    for (const b of this._bots.values()) {
      b.gapResubscribed = false;
      this._sendSubscribe(conn, b);
    }
    this._schedulePing(conn);
    this._timer(conn, this.options.maxConnectionMs, () => {
      // Before the gateway's hard limit: open the next connection, then retire this one.
      if (this._conn === conn) this._dial();
    });
    if (old) this._retire(old, 1000, 'replaced');
    this._setState('open');
  }

  _schedulePing(conn) {
    this._timer(conn, this.options.pingIntervalMs, () => {
      if (conn.retired) return;
      const sentAt = this._now();
      this._send(conn, { action: 'ping' });
      this._timer(conn, this.options.heartbeatTimeoutMs, () => {
        if (!conn.retired && conn.lastMessageAt < sentAt) this._lost(conn, 'no heartbeat');
      });
      this._schedulePing(conn);
    });
  }

  _timer(conn, ms, fn) {
    const id = this._setTimeout(() => {
      conn.timers.delete(id);
      fn();
    }, ms);
    conn.timers.add(id);
    return id;
  }

  /** Stops using a connection: its timers end, its events are ignored, its socket closes. */
  _retire(conn, code, reason) {
    conn.retired = true;
    for (const id of conn.timers) this._clearTimeout(id);
    conn.timers.clear();
    const ws = conn.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      try {
        ws.close(code, reason);
      } catch {
        /* already closed */
      }
    }
  }

  /** A connection ended without close(): drop it, reconnect when it was the live one. */
  _lost(conn, reason, code) {
    if (conn.retired) return;
    // 1000 is accepted by browsers; 4000-4999 are ours: the connection is dead to us.
    this._retire(conn, conn.opened ? 4000 : 1000, reason);
    if (this._closed) return;
    if (this._pending === conn) {
      this._pending = null;
      this._dialFailed(this._conn !== null);
      return;
    }
    if (this._conn !== conn) return;
    this._conn = null;
    if (this._now() - conn.openedAt >= this.options.resetBackoffAfterMs) this._attempt = 0;
    if (this._pending) {
      // A rotation is under way: the new connection takes over when it opens.
      this._setState('reconnecting', { reason, code });
      return;
    }
    const delay = backoffDelay(this._attempt, { ...this.options, random: this._random });
    this._attempt += 1;
    this._setState('reconnecting', { attempt: this._attempt, delayMs: delay, reason, code });
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      this._dial();
    }, delay);
  }

  _send(conn, obj) {
    if (!conn.ws || conn.retired || conn.ws.readyState !== OPEN) return false;
    try {
      conn.ws.send(JSON.stringify(obj));
      return true;
    } catch (e) {
      this._report(e);
      return false;
    }
  }

  _sendSubscribe(conn, b) {
    const msg = { action: 'subscribe', bot_id: b.id };
    if (!b.awaitingSnapshot && b.last !== null) msg.since = b.last;
    this._send(conn, msg);
  }

  // --- messages ---------------------------------------------------------------------------

  _message(conn, raw) {
    if (conn.retired) return;
    conn.lastMessageAt = this._now();
    let msg;
    try {
      msg = JSON.parse(typeof raw === 'string' ? raw : String(raw));
    } catch (e) {
      this._report(new Error(`RelayClient: a message that is not JSON: ${String(raw).slice(0, 80)}`));
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'status_update' && typeof msg.bot_id === 'string' && isSeq(msg.seq)) {
      this._ingest(msg);
      return;
    }
    if (msg.type === 'connected' && typeof msg.bot_id === 'string') conn.confirmed.add(msg.bot_id);
    if (msg.type === 'error') this._serverError(conn, msg);
    this._deliverRaw(msg);
  }

  _serverError(conn, msg) {
    if (msg.code === 'token_expired' || msg.code === 'not_connected') {
      // The connection's token is no longer good: a new connection, with a fresh token.
      if (this._conn === conn && !this._pending) this._dial();
    } else if (msg.code === 'unavailable') {
      // A subscribe failed on the server side (after its `connected`, when the error names the
      // bot): ask again for the bots not confirmed yet.
      if (typeof msg.bot_id === 'string') conn.confirmed.delete(msg.bot_id);
      const delay = Math.max(250, backoffDelay(this._attempt, { ...this.options, random: this._random }));
      this._timer(conn, delay, () => {
        for (const b of this._bots.values()) if (!conn.confirmed.has(b.id)) this._sendSubscribe(conn, b);
      });
    }
  }

  _deliverRaw(msg) {
    try {
      this._onMessage(msg);
    } catch (e) {
      this._report(e);
    }
  }

  _ingest(msg) {
    const b = this._bots.get(msg.bot_id);
    if (!b) return; // not (or no longer) subscribed
    const isEvent = typeof msg.event_id === 'string' && msg.event_id !== '';
    if (!isEvent) {
      // A snapshot: the session as of `seq`, sent for a subscribe without `since`.
      if (b.last !== null && msg.seq <= b.last) return;
      b.awaitingSnapshot = false;
      b.queue = b.queue.filter((m) => m.seq > msg.seq);
      this._clearGap(b);
      this._deliver(b, msg);
      this._pump(b);
      return;
    }
    if (b.last !== null && msg.seq <= b.last) return; // seen already
    let i = b.queue.length;
    while (i > 0 && b.queue[i - 1].seq > msg.seq) i--;
    if (i > 0 && b.queue[i - 1].seq === msg.seq) return; // already waiting
    b.queue.splice(i, 0, msg);
    this._pump(b);
  }

  _pump(b) {
    while (!b.busy && b.queue.length > 0 && this._bots.get(b.id) === b) {
      if (b.awaitingSnapshot) {
        // Events came before the snapshot; it follows, or the wait gives up on it.
        this._armGap(b);
        return;
      }
      const head = b.queue[0];
      if (b.last !== null && head.seq <= b.last) {
        b.queue.shift();
        continue;
      }
      if (b.last !== null && head.seq > b.last + 1) {
        this._armGap(b);
        return;
      }
      this._clearGap(b);
      if (head.truncated === true) {
        b.busy = true;
        this._fetchFull(b, head).then((full) => {
          b.busy = false;
          if (this._closed || this._bots.get(b.id) !== b) return;
          if (b.queue[0] === head) {
            b.queue.shift();
            this._deliver(b, full);
          }
          this._pump(b);
        });
        return;
      }
      b.queue.shift();
      this._deliver(b, head);
    }
  }

  /** Waits a little for missing seqs; asks for a replay once; then accepts the gap. */
  _armGap(b) {
    if (b.gapTimer !== null) return;
    b.gapTimer = this._setTimeout(() => {
      b.gapTimer = null;
      if (this._closed || this._bots.get(b.id) !== b || b.queue.length === 0) return;
      if (!b.gapResubscribed && this._conn) {
        b.gapResubscribed = true;
        this._sendSubscribe(this._conn, b);
        this._armGap(b);
        return;
      }
      // Nothing more is coming (expired by retention, or no snapshot): go on from here.
      const head = b.queue[0];
      this._report(new Error(`RelayClient: ${b.id}: gave up waiting for seq ${b.last === null ? '(snapshot)' : b.last + 1} before ${head.seq}`));
      b.awaitingSnapshot = false;
      b.gapResubscribed = false;
      b.last = head.seq - 1;
      this._pump(b);
    }, this.options.gapTimeoutMs);
  }

  _clearGap(b) {
    if (b.gapTimer !== null) this._clearTimeout(b.gapTimer);
    b.gapTimer = null;
    b.gapResubscribed = false;
  }

  _deliver(b, msg) {
    // A repeat is said so plainly, whichever of the two fields the relay sent.
    if (isRepeat(msg) && msg.repeat !== true) msg = { ...msg, repeat: true };
    b.last = msg.seq;
    this._save(b.id, msg.seq);
    try {
      b.state = reduceBot(b.state, msg, { maxEvents: this.options.maxEvents });
    } catch (e) {
      this._report(e);
    }
    this._deliverRaw(msg);
  }

  /**
   * Fresh artifact URLs of a bot (video, audio, transcription, …), fetched from MeetingBaaS
   * by the relay now: the links stored with a completion expire after a few hours, these
   * work for about four hours from `fetched_at`. Rejects with the relay's error reason.
   */
  async getArtifacts(botId) {
    return this._getJson(`${this.httpBase}/api/meeting-bot/${encodeURIComponent(botId)}/artifacts`);
  }

  /**
   * The sessions changed most recently, open or final, newest first (at most `limit`, 1 to
   * 200, default 50), each as the snapshot a subscribe sends: what an operations view lists
   * before it subscribes to each bot. Needs a token for every bot (`"bots": ["*"]`); a refusal
   * rejects with an Error whose `status` is the HTTP status (403 for a token naming some bots).
   */
  async listSessions({ limit } = {}) {
    const query = limit != null ? `?limit=${encodeURIComponent(limit)}` : '';
    const body = await this._getJson(`${this.httpBase}/api/meeting-bot/sessions${query}`);
    return Array.isArray(body.sessions) ? body.sessions : [];
  }

  /** A REST GET with the token (fetched again once on a 401); rejects with the reason. */
  async _getJson(url) {
    let token = this._lastToken ?? (this._getToken ? await this._getToken() : null);
    let res = await this._fetch(url, { headers: { authorization: `Bearer ${token}` } });
    if (res.status === 401 && this._getToken) {
      token = this._lastToken = await this._getToken();
      res = await this._fetch(url, { headers: { authorization: `Bearer ${token}` } });
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      const error = new Error(`GET ${url}: HTTP ${res.status}: ${body.error ?? ''}`);
      error.status = res.status;
      throw error;
    }
    return body;
  }

  async _fetchFull(b, msg) {
    const url = `${this.httpBase}/api/meeting-bot/${encodeURIComponent(b.id)}/events/${encodeURIComponent(msg.event_id)}`;
    let lastError = null;
    let freshToken = false;
    for (let attempt = 0; attempt < this.options.fetchAttempts; attempt++) {
      if (this._closed || this._bots.get(b.id) !== b) return msg;
      if (attempt > 0) {
        const ceiling = Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (attempt - 1));
        await new Promise((r) => this._setTimeout(r, ceiling / 2 + this._random() * (ceiling / 2)));
      }
      try {
        const res = await this._fetch(url, { headers: { authorization: `Bearer ${this._lastToken}` } });
        if (res.status === 401 && this._getToken && !freshToken) {
          freshToken = true;
          this._lastToken = await this._getToken();
          attempt--; // a refreshed token is not a failed attempt
          continue;
        }
        if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
        return mergeFullEvent(msg, await res.json());
      } catch (e) {
        lastError = e;
      }
    }
    // Keep the order going: deliver what we have, and say why it is not whole.
    this._report(lastError);
    return { ...msg, fetch_error: String(lastError?.message ?? lastError) };
  }

  // --- memory -----------------------------------------------------------------------------

  _load(botId) {
    if (!this._storage) return null;
    try {
      const v = this._storage.getItem(`${this._storageKey}:${botId}`);
      if (v === null) return null;
      const n = Number(v);
      return isSeq(n) ? n : null;
    } catch {
      return null;
    }
  }

  _save(botId, seq) {
    if (!this._storage) return;
    try {
      this._storage.setItem(`${this._storageKey}:${botId}`, String(seq));
    } catch {
      /* quota or disabled storage: memory is best effort */
    }
  }
}

export default RelayClient;
