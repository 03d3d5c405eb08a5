// Types of relay-client.js (the main entry of @meeting-relay/client), the meeting-relay live-update
// client (the messages of the README's "Live updates"). The React hook's types: react.d.ts.

/** Session status words, in their monotonic order (`paused` ranks with `recording`). */
export type SessionStatus =
  | 'starting'
  | 'joining'
  | 'waiting'
  | 'in_call'
  | 'recording'
  | 'paused'
  | 'ended'
  | 'completed'
  | 'failed';

/** `GET /api/meeting-bot/{bot_id}/artifacts`: URLs are `null` when MeetingBaaS has none. */
export interface Artifacts {
  bot_id: string;
  video: string | null;
  audio: string | null;
  transcription: string | null;
  raw_transcription: string | null;
  diarization: string | null;
  meeting_participants: string | null;
  duration_seconds: number | null;
  artifacts_deleted: boolean | null;
  /** When the relay fetched them (RFC 3339): presigned, they last about 4 hours from then. */
  fetched_at: string;
}

/** Canonical event types: the `event` field of every event message. */
export type EventType =
  | 'meeting.started'
  | 'meeting.completed'
  | 'meeting.failed'
  | 'transcription.available'
  | 'transcription.updated'
  | 'bot.status_change'
  | 'chat.message'
  | 'bot.reconciled'
  | 'unknown';

/** What went wrong with a bot: a failure outcome's, or a failure signal's (provisional) error. */
export interface SessionError {
  /** `error_code` (v2), `error` (v1), or the failure signal's code (`bot_rejected`, …). */
  code: string | null;
  message: string | null;
}

export interface SessionSnapshot {
  status: SessionStatus;
  status_code: string | null;
  last_event: EventType | string | null;
  last_event_id: string | null;
  meeting_started: boolean;
  /** A failure outcome's error; while not final, the newest failure signal's since the last retry; null when none. */
  error: SessionError | null;
  /** Of the newest v2 `retrying`: which attempt this is (`attempt` of `max`); null when none came. */
  attempt: number | null;
  max: number | null;
  created_at: string;
  last_updated: string;
}

/** `{"type":"connected"}`: a subscribe was accepted. */
export interface ConnectedMessage {
  type: 'connected';
  bot_id: string;
}

/** The snapshot after a subscribe without `since`; `seq` is the session's last event seq. */
export interface SnapshotMessage {
  type: 'status_update';
  bot_id: string;
  /** null when the bot has no session yet (then `seq` is 0). */
  status: SessionStatus | null;
  last_updated: string | null;
  session: SessionSnapshot | null;
  seq: number;
  event_id?: undefined;
}

/** One stored event. */
export interface EventMessage {
  type: 'status_update';
  bot_id: string;
  status: SessionStatus;
  /** When the relay received the event (RFC 3339). */
  timestamp: string;
  event: EventType | string;
  /** The event name as MeetingBaaS sent it. */
  source_event: string;
  event_id: string;
  seq: number;
  status_code?: string;
  /** The webhook body's `data` object (its transcript moved to `transcript`). */
  data: Record<string, unknown>;
  /** On completion (and transcription.available) when present in the webhook. */
  transcript?: unknown;
  /**
   * Never true in what the client delivers: it fetches the whole event first. Present only on
   * the wire, when the message would have exceeded 128 KB.
   */
  truncated?: true;
  /**
   * Set when the whole event of a truncated message could not be fetched (the message is delivered as it came).
   * @client set by the client, never sent by the relay
   */
  fetch_error?: string;
  /**
   * An outcome the session already had, come again by another path (webhook, callback, resend,
   * reconciliation): it changed nothing. The client delivers it with `repeat: true` and never
   * shows it as a new status.
   */
  repeat?: true;
  /** With `repeat`: the `event_id` of the event that first reported this outcome. */
  repeat_of?: string;
}

export interface HeartbeatMessage {
  type: 'heartbeat';
  timestamp: string;
}

/** A refused action. */
export interface ErrorMessage {
  type: 'error';
  code:
    | 'forbidden'
    | 'token_expired'
    | 'invalid_bot_id'
    | 'invalid_since'
    | 'unknown_action'
    | 'not_connected'
    | 'bad_message'
    | 'unavailable';
  message: string;
  /** On `unavailable` only: the bot whose subscribe failed after its `connected`; subscribe again. */
  bot_id?: string;
}

export type RelayMessage =
  | ConnectedMessage
  | SnapshotMessage
  | EventMessage
  | HeartbeatMessage
  | ErrorMessage;

/** `{"action":"subscribe"}`: follow a bot; with `since`, a replay of every stored event after seq `since` first. */
export interface SubscribeAction {
  action: 'subscribe';
  bot_id: string;
  since?: number | null;
}

/** `{"action":"unsubscribe"}`: stop following a bot. */
export interface UnsubscribeAction {
  action: 'unsubscribe';
  bot_id: string;
}

/** `{"action":"ping"}`: the relay answers with a heartbeat. */
export interface PingAction {
  action: 'ping';
}

/** What the client sends (API Gateway route selection on `action`). */
export type ClientAction = SubscribeAction | UnsubscribeAction | PingAction;

/** `idle` until the first subscribe; `closed` only after `close()`. */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StatusDetail {
  /** Failed dials since the last stable connection. */
  attempt?: number;
  /** The wait before the next dial. */
  delayMs?: number;
  /** Why the connection ended (close code and reason, `no heartbeat`, `connect timeout`). */
  reason?: string;
  code?: number;
}

/** The part of the Web Storage API the client uses (sessionStorage, localStorage, a Map wrapper). */
export interface SeqStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** The part of the WebSocket API the client uses (browsers' WebSocket, the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface WebSocketConstructor {
  new (url: string): WebSocketLike;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  now(): number;
}

export interface RelayClientOptions {
  /** WebSocket base URL: `ws://127.0.0.1:8000/ws` locally, `wss://<api>/<stage>` on AWS. `?token=` is added. */
  url: string;
  /** A client token (JWT). Give this or `getToken`. */
  token?: string;
  /** Called before every connect (and when a REST fetch gets 401): return a fresh token. */
  getToken?: () => string | Promise<string>;
  /** Every contract message once; status_update messages in seq order per bot. */
  onMessage?: (message: RelayMessage) => void;
  /** Connection state changes. */
  onStatus?: (state: ConnectionState, detail: StatusDetail) => void;
  /** Diagnostics: a token that could not be had, a failed fetch, a handler that threw, a gap given up on. */
  onError?: (error: unknown) => void;
  /** Where the last delivered seq of each bot is kept. Default: sessionStorage when usable; null: no memory. */
  storage?: SeqStorage | null;
  /** Prefix of the storage keys (default `relay-client:<url>`); the bot id is appended. */
  storageKey?: string;
  /** Default: globalThis.WebSocket. In Node 20, pass the `ws` package's WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Default: globalThis.fetch. */
  fetch?: (url: string, init?: { headers?: Record<string, string> }) => Promise<{ ok: boolean; status: number; json(): Promise<any> }>;
  /** Origin of the REST routes. Default: derived from `url` (ws→http, wss→https, path dropped). */
  httpBase?: string;
  /** Ping period. Default 30 000. */
  pingIntervalMs?: number;
  /** Silence after a ping that counts as a dead connection. Default 10 000. */
  heartbeatTimeoutMs?: number;
  /** Replace the connection after this long (API Gateway closes at 2 h). Default 6 900 000 (1 h 55 min). */
  maxConnectionMs?: number;
  /** Backoff base. Default 500. */
  baseDelayMs?: number;
  /** Backoff cap. Default 30 000. */
  maxDelayMs?: number;
  /** A handshake not done by then is abandoned. Default 15 000. */
  connectTimeoutMs?: number;
  /** A connection open this long resets the backoff. Default 5 000. */
  resetBackoffAfterMs?: number;
  /** How long a later seq waits for the missing ones before a replay is asked for (then given up). Default 2 000. */
  gapTimeoutMs?: number;
  /** Attempts at fetching the whole event of a truncated message. Default 6. */
  fetchAttempts?: number;
  /** Random source for the jitter, in [0, 1). Default Math.random. */
  random?: () => number;
  /** Timer functions (for tests). */
  timers?: Partial<Timers>;
  /** Dial at once when the browser fires `online`. Default true. */
  reconnectWhenOnline?: boolean;
  /** Events kept per bot in `bot(id).events` (the oldest go first). Default 500; 0: none. */
  maxEvents?: number;
}

/** What a bot's delivered messages add up to (`RelayClient.bot`, `reduceBot`). */
export interface BotState {
  bot_id: string;
  /** The session status; null before the first message. A repeat never changes it. */
  status: SessionStatus | null;
  /** The snapshot's session, kept up to date by later events; null before the first message. */
  session: SessionSnapshot | null;
  /** Events in seq order (repeats included, with `repeat: true`), at most `maxEvents`. */
  events: EventMessage[];
  /** The newest transcript an event carried, or null. */
  transcript: unknown;
  /** seq of the last message. */
  seq: number | null;
  /** Private: what the error and the retry attempt are worked out from between snapshots. */
  lifecycle: unknown;
}

export interface SubscribeOptions {
  /**
   * Where to start when nothing is remembered for this bot: omitted, the server's snapshot then
   * live events; N, every stored event after seq N (0: the whole history).
   */
  since?: number;
}

export declare const DEFAULTS: Readonly<{
  pingIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxConnectionMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
  connectTimeoutMs: number;
  resetBackoffAfterMs: number;
  gapTimeoutMs: number;
  fetchAttempts: number;
  maxEvents: number;
}>;

/** Full-jitter exponential backoff: a random delay in [0, min(maxDelayMs, baseDelayMs * 2^attempt)). */
export declare function backoffDelay(
  attempt: number,
  options?: { baseDelayMs?: number; maxDelayMs?: number; random?: () => number },
): number;

/** `ws://h:p/ws` → `http://h:p`; `wss://…` → `https://…`. */
export declare function httpBaseFromWsUrl(url: string): string;

/** The message a truncated one stands for, from the REST route's whole event. */
export declare function mergeFullEvent(message: EventMessage, full: { payload?: unknown }): EventMessage;

/** Whether a message is a repeat (`repeat: true` or a `repeat_of`). */
export declare function isRepeat(message: RelayMessage | null | undefined): boolean;

/**
 * MeetingBaaS's own time of an event (`data.status.created_at` of a status change, `data.sent_at`
 * of an outcome), as sent; null when it gave none. The message's `timestamp` is the relay's.
 */
export declare function meetingBaasTime(message: EventMessage): string | null;

/** The `{code, message}` an event's data reports (`error_code`/`error_message`, `error`/`message`, `status.error_*`), or null. */
export declare function errorOf(message: EventMessage): SessionError | null;

/** The state of a bot before any message. */
export declare function emptyBotState(botId: string): BotState;

/**
 * The state after one more message (pure; returns `state` itself for a message that is not a
 * status_update). Feed it messages in the order the client delivers them.
 */
export declare function reduceBot(state: BotState | null, message: RelayMessage, options?: { maxEvents?: number }): BotState;

export declare class RelayClient {
  constructor(options: RelayClientOptions);
  readonly url: string;
  readonly httpBase: string;
  readonly state: ConnectionState;
  /** Follow a bot (connects on the first call). Idempotent. */
  subscribe(botId: string, options?: SubscribeOptions): void;
  /** Stop following a bot; its remembered seq is kept. */
  unsubscribe(botId: string): void;
  /** The last seq delivered (or remembered) for a bot. */
  lastSeq(botId: string): number | null;
  /** What the messages delivered for a subscribed bot add up to; null when not subscribed. */
  bot(botId: string): BotState | null;
  /** Close for good: no reconnect. */
  close(): void;
  /** Fresh artifact URLs of a bot, fetched from MeetingBaaS by the relay now (read scope). */
  getArtifacts(botId: string): Promise<Artifacts>;
  /**
   * The sessions changed most recently, open or final, newest first, each as a subscribe's
   * snapshot (`GET /api/meeting-bot/sessions`; a token for every bot). Rejects with a
   * `RelayHttpError` (its `status`: 401, 403, 400, 503…) when the relay refuses.
   */
  listSessions(options?: { limit?: number }): Promise<SnapshotMessage[]>;
}

/** What the REST helpers reject with when the relay answers an error. */
export interface RelayHttpError extends Error {
  status: number;
}

export default RelayClient;
