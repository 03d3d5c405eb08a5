// react.js: the React hook of @meeting-relay/client (`@meeting-relay/client/react`).
//
//   import { useBot } from '@meeting-relay/client/react';
//   const getToken = async () => (await fetch('/my-backend/relay-token')).text(); // stable: module level
//   function BotStatus({ botId }) {
//     const { status, session, events, transcript, connection, error } =
//       useBot(botId, { url: 'ws://127.0.0.1:8000/ws', getToken });
//     return <p>{status ?? '…'} ({connection})</p>;
//   }
//
// Components that follow bots through the same relay URL and the same token provider share one
// RelayClient, so one WebSocket, and one subscription per bot: the first component on a bot
// subscribes, the last one to go unsubscribes (after `lingerMs`, so a remount costs nothing),
// and the connection closes when no bot is followed any more. `<RelayProvider url getToken>`
// gives the URL and the token provider to every useBot below it (and makes an inline getToken
// safe: the provider's identity is the provider element's, not the function's).
//
// No dependency but React (a peer, >= 18: useSyncExternalStore).
import { createContext, createElement, useCallback, useContext, useMemo, useRef, useSyncExternalStore } from 'react';
import { RelayClient } from './relay-client.js';

const DEFAULT_LINGER_MS = 1_000;

/** Errors the client recovers from on its own: not worth showing. */
const TRANSIENT = new Set(['token_expired', 'not_connected', 'unavailable']);

const RelayContext = createContext(null);

/** url -> (token provider -> Hub): one RelayClient per relay URL and token provider. */
const hubs = new Map();

function idleState(connection = 'idle') {
  return Object.freeze({
    status: null,
    session: null,
    events: Object.freeze([]),
    transcript: null,
    connection,
    error: null,
  });
}

const IDLE = idleState();

/** One shared RelayClient and the components that follow bots through it. */
class Hub {
  constructor(url, provider, options) {
    this.url = url;
    this.provider = provider;
    this.bots = new Map(); // bot id -> { refs, listeners, state, error, releaseTimer }
    this.connection = 'idle';
    this.confirmed = new Set(); // bots the current connection said `connected` for
    this.closed = false;
    const { onError, lingerMs, ...clientOptions } = options ?? {};
    this.lingerMs = lingerMs ?? DEFAULT_LINGER_MS;
    this._onError = typeof onError === 'function' ? onError : null;
    this.client = new RelayClient({
      // No memory across page loads: a page that starts again gets the history (or snapshot)
      // again, so what a component shows is whole. Reconnects resume from the last seq.
      storage: null,
      ...clientOptions,
      url,
      getToken: () => this._token(),
      onMessage: (m) => this._message(m),
      onStatus: (s) => this._status(s),
      onError: (e) => {
        if (this._onError) this._onError(e);
      },
    });
  }

  async _token() {
    try {
      const t = typeof this.provider === 'function' ? await this.provider() : this.provider;
      if (typeof t !== 'string' || t === '') throw new Error('the token provider gave no token');
      this._setErrors((entry) => (entry.error?.code === 'token_unavailable' ? null : entry.error));
      return t;
    } catch (e) {
      const error = { code: 'token_unavailable', message: String(e?.message ?? e) };
      this._setErrors(() => error);
      throw e;
    }
  }

  _setErrors(fn) {
    for (const [id, entry] of this.bots) {
      const next = fn(entry, id);
      if (next !== entry.error) {
        entry.error = next;
        this._refresh(id);
      }
    }
  }

  _message(m) {
    if (m.type === 'status_update' && typeof m.bot_id === 'string') {
      const entry = this.bots.get(m.bot_id);
      if (!entry) return;
      entry.error = null;
      this._refresh(m.bot_id);
    } else if (m.type === 'connected' && typeof m.bot_id === 'string') {
      this.confirmed.add(m.bot_id);
      const entry = this.bots.get(m.bot_id);
      if (entry && entry.error) {
        entry.error = null;
        this._refresh(m.bot_id);
      }
    } else if (m.type === 'error' && !TRANSIENT.has(m.code)) {
      // A refusal names no bot: it answers a subscribe the connection has not confirmed.
      const error = { code: String(m.code ?? 'error'), message: String(m.message ?? '') };
      this._setErrors((entry, id) => (this.confirmed.has(id) ? entry.error : error));
    }
  }

  _status(state) {
    this.connection = state;
    if (state !== 'open') this.confirmed.clear();
    for (const id of this.bots.keys()) this._refresh(id);
  }

  /** A new state object for one bot, and its components told. */
  _refresh(id) {
    const entry = this.bots.get(id);
    if (!entry) return;
    const s = this.client.bot(id);
    entry.state = Object.freeze({
      status: s?.status ?? null,
      session: s?.session ?? null,
      events: s?.events ?? IDLE.events,
      transcript: s?.transcript ?? null,
      connection: this.connection,
      error: entry.error,
    });
    for (const notify of [...entry.listeners]) notify();
  }

  state(id) {
    return this.bots.get(id)?.state ?? null;
  }

  /** A component follows `id`: the first one subscribes. Returns its release. */
  retain(id, since, notify) {
    let entry = this.bots.get(id);
    if (entry) {
      entry.refs += 1;
      if (entry.releaseTimer !== null) clearTimeout(entry.releaseTimer);
      entry.releaseTimer = null;
    } else {
      entry = { refs: 1, listeners: new Set(), state: null, error: null, releaseTimer: null };
      this.bots.set(id, entry);
      this.client.subscribe(id, since == null ? {} : { since });
      this._refresh(id);
    }
    entry.listeners.add(notify);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.listeners.delete(notify);
      entry.refs -= 1;
      if (entry.refs > 0) return;
      entry.releaseTimer = setTimeout(() => {
        entry.releaseTimer = null;
        if (entry.refs > 0 || this.bots.get(id) !== entry) return;
        this.bots.delete(id);
        this.client.unsubscribe(id);
        if (this.bots.size === 0) this._close();
      }, this.lingerMs);
    };
  }

  _close() {
    this.closed = true;
    this.client.close();
    const byProvider = hubs.get(this.url);
    if (byProvider?.get(this.provider) === this) byProvider.delete(this.provider);
    if (byProvider?.size === 0) hubs.delete(this.url);
  }
}

function findHub(url, provider) {
  return hubs.get(url)?.get(provider) ?? null;
}

function acquireHub(url, provider, options) {
  let byProvider = hubs.get(url);
  if (!byProvider) hubs.set(url, (byProvider = new Map()));
  let hub = byProvider.get(provider);
  if (!hub || hub.closed) byProvider.set(provider, (hub = new Hub(url, provider, options)));
  return hub;
}

/**
 * Gives `url`, the token (`getToken` or `token`) and RelayClient `options` to every `useBot`
 * below it. All of them share one connection; an inline `getToken` is fine here (the newest one
 * is called).
 */
export function RelayProvider({ url, token, getToken, options, children }) {
  const latest = useRef(null);
  latest.current = { token, getToken };
  const provider = useMemo(
    () => () => {
      const { token: t, getToken: g } = latest.current;
      return typeof g === 'function' ? g() : t;
    },
    [],
  );
  const value = useMemo(() => ({ url, provider, options }), [url, provider, options]);
  return createElement(RelayContext.Provider, { value }, children);
}

/**
 * Follows one bot: `{status, session, events, transcript, connection, error}`, re-rendered on
 * every message of it and every change of the connection. A repeat (an outcome the session had
 * already, by another path) is in `events` with `repeat: true` but never changes `status`.
 * A null or empty `botId` follows nothing.
 */
export function useBot(botId, options = {}) {
  const ctx = useContext(RelayContext);
  const { url: ownUrl, token, getToken, since: ownSince, ...clientOptions } = options ?? {};
  const url = ownUrl ?? ctx?.url;
  const provider = getToken ?? token ?? ctx?.provider;
  if (botId && !url) throw new Error('useBot: give `url` (or a <RelayProvider url>)');
  if (botId && provider == null) throw new Error('useBot: give `getToken` or `token` (or a <RelayProvider>)');
  // Whole history by default, so `events` is complete; null: the relay's snapshot, then live.
  const since = ownSince === undefined ? 0 : ownSince;
  const config = useRef(null);
  config.current = { ...(ctx?.options ?? {}), ...clientOptions };

  const subscribe = useCallback(
    (notify) => {
      if (!botId) return () => {};
      return acquireHub(url, provider, config.current).retain(botId, since, notify);
    },
    [url, provider, botId, since],
  );
  const getSnapshot = useCallback(() => {
    if (!botId) return IDLE;
    return findHub(url, provider)?.state(botId) ?? IDLE;
  }, [url, provider, botId]);
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

export default useBot;
