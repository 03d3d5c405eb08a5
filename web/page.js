// page.js: what the demo page (app.js) and the operations view (ops.js) share: the WebSocket
// URL of this relay, the connection badge, times, and the development-mode token.

export const $ = (id) => document.getElementById(id);

export const WS_URL = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;

const STATE_TEXT = {
  idle: 'not connected',
  connecting: 'connecting…',
  open: 'live',
  reconnecting: 'reconnecting…',
  closed: 'closed',
};

/** The connection badge (`el`) for a RelayClient state, with the wait before a reconnect. */
export function showConnection(el, state, detail = {}) {
  el.dataset.state = state;
  el.textContent =
    state === 'reconnecting' && Number.isFinite(detail.delayMs)
      ? `reconnecting in ${(detail.delayMs / 1000).toFixed(1)} s…`
      : (STATE_TEXT[state] ?? state);
}

/** A time of day, from an RFC 3339 instant ('—' when there is none). */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Whether the relay runs on its development secrets (its helper routes answer then). */
export async function isDevelopment() {
  try {
    const res = await fetch('/api/dev/info');
    return res.ok && (await res.json()).development === true;
  } catch {
    return false;
  }
}

/** A one-hour read token from the development helper, for one bot or `*`. */
export async function devToken(bot) {
  const res = await fetch('/api/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ bot_id: bot }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.token) throw new Error(body.error ?? `token: HTTP ${res.status}`);
  return body.token;
}
