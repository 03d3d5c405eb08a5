// Types of react.js: the React hook of @meeting-relay/client (`@meeting-relay/client/react`).
import type { ReactNode, ReactElement } from 'react';
import type {
  ConnectionState,
  EventMessage,
  RelayClientOptions,
  SessionError,
  SessionSnapshot,
  SessionStatus,
} from './relay-client.js';

/** RelayClient options a hook or a provider may set (the hook owns url, the token and the callbacks). */
export type SharedClientOptions = Omit<RelayClientOptions, 'url' | 'token' | 'getToken' | 'onMessage' | 'onStatus' | 'onError'> & {
  /** Diagnostics of the shared client (a token that could not be had, a gap given up on…). */
  onError?: (error: unknown) => void;
  /** How long a bot stays subscribed after its last component unmounts. Default 1000 ms. */
  lingerMs?: number;
};

export interface UseBotOptions extends SharedClientOptions {
  /** WebSocket base URL (`ws://127.0.0.1:8000/ws`, on AWS `wss://<api>/<stage>`). Default: the RelayProvider's. */
  url?: string;
  /**
   * Called before every connect: a fresh client token. Components share a connection when they
   * pass the same function (define it at module level, or use `useCallback`, or a RelayProvider).
   */
  getToken?: () => string | Promise<string>;
  /** A fixed client token (instead of getToken). */
  token?: string;
  /**
   * Where to start: 0 (the default) the whole stored history, so `events` is complete; N, the
   * events after seq N; null, the relay's snapshot of the session, then live events.
   */
  since?: number | null;
}

/** Why the bot cannot be followed: a refusal by the relay (`forbidden`, `invalid_bot_id`, …) or `token_unavailable`. */
export interface BotFollowError {
  code: string;
  message: string;
}

export interface BotView {
  /** The session status; null before the first message. A repeat never changes it. */
  status: SessionStatus | null;
  /** The session: outcome, `error` ({code, message}), retry `attempt` of `max`, last event… */
  session: SessionSnapshot | null;
  /** Events in seq order (a repeat has `repeat: true`), at most `maxEvents` (500). */
  events: readonly EventMessage[];
  /** The newest transcript a completion carried, or null. */
  transcript: unknown;
  /** The shared connection's state. */
  connection: ConnectionState;
  /** Why the bot cannot be followed, or null. (What went wrong with the bot itself: `session.error`.) */
  error: BotFollowError | null;
}

/** Follows one bot (null or '' follows nothing). */
export declare function useBot(botId: string | null | undefined, options?: UseBotOptions): BotView;

export interface RelayProviderProps {
  url: string;
  getToken?: () => string | Promise<string>;
  token?: string;
  options?: SharedClientOptions;
  children?: ReactNode;
}

/** Gives url, token and options to every useBot below it; they share one connection. */
export declare function RelayProvider(props: RelayProviderProps): ReactElement;

export type { SessionError, SessionSnapshot, SessionStatus, EventMessage, ConnectionState };

export default useBot;
