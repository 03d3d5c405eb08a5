// app.js: the demo page. Watches one bot through RelayClient and shows its status (with its
// outcome and error, and the retry attempt of a v2 bot), a timeline of its events (each with the
// relay's and MeetingBaaS's time; a repeat marked as one) and, at the end, its transcript. No
// framework; DOM text only (never innerHTML with data from the wire).
import { RelayClient, emptyBotState, isRepeat, meetingBaasTime, reduceBot } from '/relay-client.js';
import { $, WS_URL, devToken, fmtTime, isDevelopment, showConnection } from '/page.js';

const el = {
  connection: $('connection'),
  botLabel: $('bot-label'),
  status: $('status'),
  statusDescription: $('status-description'),
  attempt: $('attempt'),
  outcome: $('outcome'),
  error: $('error'),
  errorCode: $('error-code'),
  errorMessage: $('error-message'),
  artifacts: $('artifacts'),
  artifactsFetch: $('artifacts-fetch'),
  artifactLinks: $('artifact-links'),
  artifactsNote: $('artifacts-note'),
  lastEvent: $('last-event'),
  lastSeq: $('last-seq'),
  lastTime: $('last-time'),
  notice: $('notice'),
  settings: $('settings'),
  bot: $('bot'),
  token: $('token'),
  tokenHint: $('token-hint'),
  testEvent: $('test-event'),
  testEventForm: $('test-event-form'),
  eventType: $('event-type'),
  sendResult: $('send-result'),
  timeline: $('timeline'),
  timelineEmpty: $('timeline-empty'),
  timelineCount: $('timeline-count'),
  transcriptPanel: $('transcript-panel'),
  transcript: $('transcript'),
};

const MAX_ITEMS = 500; // timeline items kept (and remembered across a refresh)
const MAX_TRANSCRIPT_SEGMENTS = 2000;
const MAX_REMEMBERED_TRANSCRIPT = 200_000; // characters kept in sessionStorage

const STATUS_TEXT = {
  starting: 'The bot is being started.',
  joining: 'The bot is joining the call.',
  waiting: 'The bot is in the waiting room.',
  in_call: 'The bot is in the call, not recording.',
  recording: 'The bot is in the call and recording.',
  paused: 'Recording is paused.',
  ended: 'The call has ended; the recording is being processed.',
  completed: 'The meeting is over and its recording is ready.',
  failed: 'The bot could not do its job.',
};

const params = new URLSearchParams(location.search);
const hashParams = new URLSearchParams(location.hash.replace(/^#/, ''));

let development = false;
let client = null;
let view = null; // what the page shows for the current bot; remembered per tab

// --- remembered view ---------------------------------------------------------------------

function viewKey(bot) {
  return `relay-demo:view:${WS_URL}:${bot}`;
}

function emptyView(bot) {
  // `state`: what reduceBot makes of the messages (status, session error, attempt), events not kept.
  return { bot, status: null, lastEvent: null, seq: null, time: null, items: [], transcript: null, state: null };
}

function loadView(bot) {
  try {
    const raw = sessionStorage.getItem(viewKey(bot));
    if (raw) {
      const v = JSON.parse(raw);
      if (v && v.bot === bot && Array.isArray(v.items)) return v;
    }
  } catch {
    /* nothing usable remembered */
  }
  return emptyView(bot);
}

function saveView() {
  if (!view) return;
  // A long transcript is shown, but not worth the storage quota across a refresh.
  const big = view.transcript && JSON.stringify(view.transcript).length > MAX_REMEMBERED_TRANSCRIPT;
  for (const v of [big ? { ...view, transcript: null } : view, { ...view, transcript: null }]) {
    try {
      sessionStorage.setItem(viewKey(view.bot), JSON.stringify(v));
      return;
    } catch {
      /* over the quota: try without the transcript; else a refresh just starts empty */
    }
  }
}

// --- rendering -----------------------------------------------------------------------------

function setConnection(state, detail = {}) {
  showConnection(el.connection, state, detail);
}

function showNotice(text) {
  el.notice.textContent = text ?? '';
  el.notice.hidden = !text;
}

/** The session as the messages so far make it (null before any). */
function session() {
  return view.state?.session ?? null;
}

function renderSession() {
  const s = session();
  const final = view.status === 'completed' || view.status === 'failed';
  el.outcome.textContent = final ? view.status : view.status ? 'pending' : '—';
  el.outcome.dataset.status = final ? view.status : '';
  const attempt = view.status === 'starting' && s?.attempt != null;
  el.attempt.hidden = !attempt;
  el.attempt.textContent = attempt ? (s.max != null ? `attempt ${s.attempt} of ${s.max}` : `attempt ${s.attempt}`) : '';
  const err = s?.error ?? null;
  el.error.hidden = !err;
  el.error.dataset.final = final ? 'true' : 'false';
  el.errorCode.textContent = err?.code ?? '';
  el.errorCode.hidden = !err?.code;
  el.errorMessage.textContent = err?.message ?? '';
  el.artifacts.hidden = view.status !== 'completed';
}

const ARTIFACT_LABELS = [
  ['video', 'Video'],
  ['audio', 'Audio'],
  ['transcription', 'Transcription'],
  ['raw_transcription', 'Raw transcription'],
  ['diarization', 'Diarization'],
  ['meeting_participants', 'Participants'],
];

/** The recording's links, fetched now through the relay (they work days later). */
async function showArtifacts() {
  if (!client) return;
  el.artifactsFetch.disabled = true;
  el.artifactLinks.replaceChildren();
  try {
    const a = await client.getArtifacts(view.bot);
    for (const [key, label] of ARTIFACT_LABELS) {
      if (!a[key]) continue;
      const li = document.createElement('li');
      const link = document.createElement('a');
      link.href = a[key];
      link.textContent = label;
      link.rel = 'noopener noreferrer';
      link.target = '_blank';
      li.append(link);
      el.artifactLinks.append(li);
    }
    el.artifactsNote.textContent = el.artifactLinks.childElementCount
      ? `Fetched ${fmtTime(a.fetched_at)}; valid for about 4 hours.`
      : 'MeetingBaaS has no files for this bot.';
  } catch (e) {
    el.artifactsNote.textContent = `Could not fetch the links: ${e.message ?? e}`;
  } finally {
    el.artifactsFetch.disabled = false;
  }
}

function renderStatus() {
  el.botLabel.textContent = view.bot;
  renderSession();
  // Written only when it changes: a live region announces every write.
  const shown = view.status ?? 'no events yet';
  if (el.status.textContent !== shown) el.status.textContent = shown;
  el.status.dataset.status = view.status ?? '';
  el.statusDescription.textContent = view.status ? (STATUS_TEXT[view.status] ?? '') : 'Waiting for the first event of this bot.';
  el.lastEvent.textContent = view.lastEvent ?? '—';
  el.lastSeq.textContent = view.seq ?? '—';
  el.lastTime.textContent = fmtTime(view.time);
  document.title = view.status ? `${view.status} · ${view.bot} · meeting-relay` : 'meeting-relay · live bot status';
}

/** A short human line of what an event carried. */
function detailOf(msg) {
  const d = msg.data ?? {};
  if (msg.event === 'chat.message' && d.text) return `${d.sender_name ?? 'someone'}: ${d.text}`;
  if (msg.event === 'meeting.failed') {
    return [d.error_code ?? d.error, d.error_message ?? d.message].filter((x) => typeof x === 'string' && x).join(' — ');
  }
  if (msg.status_code === 'retrying' && d.status?.attempt != null) {
    return `retrying: attempt ${d.status.attempt}${d.status.max != null ? ` of ${d.status.max}` : ''}`;
  }
  if (msg.status_code) return msg.status_code;
  if (msg.source_event && msg.source_event !== msg.event) return `from ${msg.source_event}`;
  return '';
}

function timeElement(className, iso, label) {
  const t = document.createElement('time');
  t.className = className;
  t.dateTime = iso ?? '';
  t.textContent = fmtTime(iso);
  t.title = iso ? `${label}: ${iso}` : `${label}: not given`;
  return t;
}

function itemElement(item, restored) {
  const li = document.createElement('li');
  li.className = `event${restored ? ' restored' : ''}${item.repeat ? ' repeat' : ''}`;
  li.dataset.seq = String(item.seq);
  li.dataset.eventId = item.event_id;
  li.dataset.status = item.status ?? '';
  const seq = document.createElement('span');
  seq.className = 'seq';
  seq.textContent = `#${item.seq}`;
  const name = document.createElement('span');
  name.className = 'event-name';
  name.textContent = item.event;
  const status = document.createElement('span');
  status.className = 'pill';
  status.dataset.status = item.status ?? '';
  status.textContent = item.status ?? '—';
  // When the relay received it, and when MeetingBaaS says it happened.
  const times = document.createElement('span');
  times.className = 'times';
  const mb = timeElement('mb-time', item.mbTime ?? null, 'MeetingBaaS time');
  if (!item.mbTime) mb.textContent = '—';
  const mbLabel = document.createElement('span');
  mbLabel.className = 'time-label';
  mbLabel.textContent = 'MeetingBaaS ';
  const rxLabel = document.createElement('span');
  rxLabel.className = 'time-label';
  rxLabel.textContent = 'received ';
  times.append(rxLabel, timeElement('received', item.time, 'received by the relay'), mbLabel, mb);
  if (item.repeat) {
    name.append(' ');
    const mark = document.createElement('span');
    mark.className = 'repeat-mark';
    mark.textContent = 'repeat';
    mark.title = item.repeatOf ? `the same outcome as ${item.repeatOf}; it changed nothing` : 'an outcome already reported; it changed nothing';
    name.append(mark);
  }
  li.append(seq, name, status, times);
  if (item.detail) {
    const detail = document.createElement('span');
    detail.className = 'detail';
    detail.textContent = item.detail;
    li.append(detail);
  }
  return li;
}

function renderCount() {
  const n = view.items.length;
  el.timelineEmpty.hidden = n > 0;
  el.timelineCount.textContent = n ? `(${n})` : '';
}

function renderTimeline() {
  el.timeline.replaceChildren(...view.items.slice().reverse().map((it) => itemElement(it, true)));
  renderCount();
}

/** Segments of `speaker` + words (v1 `transcript`, v2 `transcription`), a string, or anything. */
function transcriptText(t) {
  if (typeof t === 'string') return [{ speaker: '', text: t }];
  const segs = Array.isArray(t) ? t : Array.isArray(t?.utterances) ? t.utterances : null;
  if (!segs) return [{ speaker: '', text: JSON.stringify(t, null, 2) }];
  const out = [];
  for (const s of segs.slice(0, MAX_TRANSCRIPT_SEGMENTS)) {
    const words = Array.isArray(s?.words) ? s.words.map((w) => w?.word ?? w?.text ?? '').join(' ') : (s?.text ?? '');
    out.push({ speaker: s?.speaker != null ? String(s.speaker) : '', text: words });
  }
  if (segs.length > MAX_TRANSCRIPT_SEGMENTS) {
    out.push({ speaker: '', text: `… ${segs.length - MAX_TRANSCRIPT_SEGMENTS} more segments` });
  }
  return out;
}

function renderTranscript() {
  const lines = view.transcript;
  el.transcriptPanel.hidden = !lines || lines.length === 0;
  if (!lines) {
    el.transcript.replaceChildren();
    return;
  }
  el.transcript.replaceChildren(
    ...lines.map(({ speaker, text }) => {
      const p = document.createElement('p');
      if (speaker) {
        const who = document.createElement('strong');
        who.textContent = `${speaker}: `;
        p.append(who);
      }
      p.append(document.createTextNode(text));
      return p;
    }),
  );
}

function renderAll() {
  renderStatus();
  renderTimeline();
  renderTranscript();
}

// --- messages ------------------------------------------------------------------------------

function onMessage(msg) {
  if (!view) return;
  if (msg.type === 'status_update' && msg.bot_id === view.bot) {
    // The page keeps its own BotState (remembered across a refresh); the transcript is kept apart.
    view.state = reduceBot(view.state ?? emptyBotState(view.bot), msg, { maxEvents: 0 });
    view.state.transcript = null;
    if (!msg.event_id) {
      // A snapshot: the session as it stands.
      view.status = msg.status ?? view.status;
      view.seq = msg.seq;
      view.time = msg.last_updated ?? view.time;
      view.lastEvent = msg.session?.last_event ?? view.lastEvent;
    } else {
      const repeat = isRepeat(msg);
      // A repeat is not news: it goes in the timeline, marked, and the status stays as it is.
      if (!repeat) view.status = view.state.status ?? msg.status ?? view.status;
      view.seq = msg.seq;
      view.time = msg.timestamp;
      view.lastEvent = msg.event;
      const item = {
        seq: msg.seq,
        event: msg.event,
        status: msg.status,
        time: msg.timestamp,
        mbTime: meetingBaasTime(msg),
        event_id: msg.event_id,
        repeat,
        repeatOf: msg.repeat_of ?? null,
        detail: detailOf(msg),
      };
      view.items.push(item);
      if (view.items.length > MAX_ITEMS) view.items.splice(0, view.items.length - MAX_ITEMS);
      el.timeline.prepend(itemElement(item, false));
      while (el.timeline.children.length > MAX_ITEMS) el.timeline.lastElementChild.remove();
      renderCount();
      if (msg.transcript != null) {
        view.transcript = transcriptText(msg.transcript);
        renderTranscript();
      }
      if (msg.fetch_error) showNotice(`Event #${msg.seq} was too big for a live message and could not be fetched: ${msg.fetch_error}`);
    }
    renderStatus();
    saveView();
  } else if (msg.type === 'error') {
    const why = {
      forbidden: 'This token does not allow this bot.',
      token_expired: 'The token expired; getting a fresh connection.',
      invalid_bot_id: 'That is not a valid bot id.',
    }[msg.code];
    showNotice(why ?? `The relay refused: ${msg.message} (${msg.code})`);
    if (msg.code === 'forbidden' && view.status === null) {
      el.status.textContent = 'no access';
      el.statusDescription.textContent = 'Use a token that names this bot (or "*").';
    }
  } else if (msg.type === 'connected' && msg.bot_id === view.bot) {
    showNotice(null);
  }
}

// --- tokens and wiring ---------------------------------------------------------------------

function watch(bot, token) {
  if (client) client.close();
  client = null;
  view = loadView(bot);
  renderAll();
  showNotice(null);
  const url = new URL(location.href);
  if (url.searchParams.get('bot') !== bot) {
    url.searchParams.set('bot', bot);
    history.replaceState(null, '', url);
  }
  if (!token && !development) {
    setConnection('idle');
    showNotice('Enter a client token for this bot to watch it.');
    el.token.focus();
    return;
  }
  // A typed-in token is used as is; in development mode a fresh one is minted for every connect.
  const getToken = token ? () => token : () => devToken(bot);
  client = new RelayClient({
    url: WS_URL,
    getToken,
    onMessage,
    onStatus: setConnection,
    onError: (e) => console.warn('relay-client:', e),
  });
  window.relayDemo = { client, view };
  // A tab that remembers nothing starts from the whole history, so the timeline is complete.
  client.subscribe(bot, { since: 0 });
}

async function main() {
  const bot = (params.get('bot') || 'test-123').trim();
  const given = hashParams.get('token') || params.get('token') || '';
  el.bot.value = bot;
  el.token.value = given;
  development = await isDevelopment();
  el.testEvent.hidden = !development;
  if (development) {
    el.tokenHint.textContent = '(optional in development mode: the page gets one from /api/dev/token)';
  }

  el.artifactsFetch.addEventListener('click', () => showArtifacts());
  el.settings.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = el.bot.value.trim();
    if (!next) return;
    watch(next, el.token.value.trim());
  });

  el.testEventForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!view) return;
    const type = el.eventType.value;
    el.sendResult.textContent = `sending ${type}…`;
    try {
      const res = await fetch('/api/dev/test-event', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ bot_id: view.bot, type }),
      });
      const body = await res.json().catch(() => ({}));
      el.sendResult.textContent = res.ok
        ? `${type}: ${body.duplicate ? 'duplicate' : 'accepted'} as ${body.event} (${body.event_id})`
        : `${type}: HTTP ${res.status} ${body.error ?? ''}`;
    } catch (e) {
      el.sendResult.textContent = `${type}: ${e.message}`;
    }
  });

  watch(bot, given);
}

main();
