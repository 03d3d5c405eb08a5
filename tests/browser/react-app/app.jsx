// The React test app of tests/browser/react-hook.test.mjs, bundled with esbuild at test time:
// components that follow bots through @meeting-relay/client/react, each writing what useBot
// returns into data- attributes for the test to read. The test mounts and unmounts them with
// window.__setBots([{ key, id, token? }]).
import { useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { RelayProvider, useBot } from '@meeting-relay/client/react';

const params = new URLSearchParams(location.search);
const RELAY = params.get('relay'); // ws://127.0.0.1:PORT/ws
// Reconnect after a fixed delay (no jitter), long enough to post events while disconnected.
const OPTIONS = {
  baseDelayMs: Number(params.get('delay') ?? 1500),
  maxDelayMs: 3000,
  random: () => 0.999,
  lingerMs: 300,
  reconnectWhenOnline: false,
};

async function getToken() {
  const res = await fetch('/token');
  if (!res.ok) throw new Error(`token: HTTP ${res.status}`);
  return res.text();
}

function Bot({ id, token, name }) {
  const v = useBot(id, token ? { url: RELAY, token, ...OPTIONS } : undefined);
  // Every status this component was shown, in order (a repeat must add none).
  const history = useRef([]);
  if (history.current.at(-1) !== v.status) history.current.push(v.status);
  const s = v.session;
  return (
    <section
      className="bot"
      data-name={name}
      data-bot={id}
      data-status={v.status ?? ''}
      data-connection={v.connection}
      data-error={v.error?.code ?? ''}
      data-seqs={v.events.map((e) => e.seq).join(',')}
      data-repeats={v.events.filter((e) => e.repeat === true).map((e) => e.seq).join(',')}
      data-history={history.current.map((x) => x ?? '-').join(',')}
      data-attempt={s?.attempt != null ? `${s.attempt}/${s.max}` : ''}
      data-session-error={s?.error ? `${s.error.code}|${s.error.message}` : ''}
      data-transcript={v.transcript ? JSON.stringify(v.transcript).length : 0}
    >
      {name} {id}: {v.status ?? '…'} ({v.connection}) {v.events.length} events
      {v.status === 'starting' && s?.attempt != null ? ` attempt ${s.attempt} of ${s.max}` : ''}
    </section>
  );
}

function App() {
  const [bots, setBots] = useState([]);
  window.__setBots = setBots;
  return (
    <RelayProvider url={RELAY} getToken={() => getToken()} options={OPTIONS}>
      {bots.map((b) => (
        <Bot key={b.key} name={b.key} id={b.id} token={b.token} />
      ))}
    </RelayProvider>
  );
}

createRoot(document.getElementById('root')).render(<App />);
window.__ready = true;
