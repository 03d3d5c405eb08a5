// Test support shared by tests/web and tests/browser: the real `relay serve` (debug build) on a
// loopback port of our own, in development mode, with a temporary data dir; and small HTTP
// helpers. Not a test file itself (node --test runs *.test.mjs only).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RELAY_BIN = process.env.RELAY_BIN ?? join(ROOT, 'target', 'debug', 'relay');

/** Settings the relay reads: cleared so the caller's environment cannot leak into a test. */
const SETTINGS = [
  'MEETINGBAAS_API_KEY',
  'MEETINGBAAS_WEBHOOK_SECRET',
  'MEETINGBAAS_CALLBACK_SECRET',
  'MEETINGBAAS_API_URL',
  'RELAY_CLIENT_SECRET',
  'RELAY_LISTEN',
  'RELAY_DATA_DIR',
  'RELAY_WEB_DIR',
  'EVENTS_TABLE',
  'CONNECTIONS_TABLE',
  'MAX_BODY_BYTES',
  'RETENTION_DAYS',
  'AWS_ENDPOINT_URL_DYNAMODB',
  'CORS_ALLOW_ORIGINS',
  'RELAY_TESTING_MANAGEMENT_KEY',
];

/**
 * The management key the tests give `relay serve` (RELAY_TESTING_MANAGEMENT_KEY), so that they
 * can call its `@connections` API as its own client does; without it that API answers 403.
 */
export const MANAGEMENT_KEY = '5eed'.repeat(16);
/** The headers of a test's own call to `@connections`. */
export const MANAGEMENT_HEADERS = { authorization: `RelayManagementKey ${MANAGEMENT_KEY}` };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(label = 'relay-web') {
  return mkdtempSync(join(tmpdir(), `${label}-`));
}

/** Polls `fn` until it returns a truthy value, or throws `what` after `ms`. */
export async function waitFor(fn, { ms = 20_000, every = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
    await sleep(every);
  }
}

/**
 * A `relay serve` process in development mode. `start()` again after `kill()`/`stop()` restarts
 * it on the same port and data dir.
 */
export class Relay {
  constructor({ port, dataDir, args = [], env = {} } = {}) {
    this.port = port;
    // With MEETINGBAAS_API_KEY given, development mode is off and that key authenticates webhooks.
    this.configuredKey = env.MEETINGBAAS_API_KEY?.split(',')[0] ?? null;
    this.dataDir = dataDir ?? tempDir();
    this.ownsDir = !dataDir;
    this.args = args;
    this.env = env;
    this.child = null;
    this.output = [];
  }

  static async start(opts = {}) {
    const port = opts.port ?? (await freePort());
    const r = new Relay({ ...opts, port });
    try {
      await r.start();
    } catch (e) {
      await r.dispose();
      throw e;
    }
    return r;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start() {
    if (!existsSync(RELAY_BIN)) {
      throw new Error(`no relay binary at ${RELAY_BIN}: run \`cargo build -p relay\` (scripts/test-web does)`);
    }
    const env = { ...process.env };
    for (const k of SETTINGS) delete env[k];
    Object.assign(env, {
      RUST_LOG: 'info',
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
      RELAY_TESTING_MANAGEMENT_KEY: MANAGEMENT_KEY,
      ...this.env,
    });
    const child = spawn(
      RELAY_BIN,
      ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir, ...this.args],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    let ready;
    const listening = new Promise((resolve) => (ready = resolve));
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          this.output.push(line);
          if (line.includes('"message":"listening"')) ready(true);
        }
      });
    }
    let timer;
    const outcome = await Promise.race([
      listening,
      exited.then((e) => e),
      new Promise((r) => (timer = setTimeout(() => r('timeout'), 60_000))),
    ]);
    clearTimeout(timer);
    if (outcome !== true) {
      this.kill();
      throw new Error(`relay serve did not start (${JSON.stringify(outcome)}); output:\n${this.output.join('\n')}`);
    }
    return this;
  }

  /** SIGKILL: no goodbye to the clients, as in a crash. */
  async kill() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM and wait for the exit. */
  async stop() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    let timer;
    const done = await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(() => r(null), 15_000)))]);
    clearTimeout(timer);
    if (!done) await this.kill();
  }

  async dispose() {
    await this.kill();
    if (this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  get apiKey() {
    if (this.configuredKey) return this.configuredKey;
    return JSON.parse(readFileSync(join(this.dataDir, 'dev-secrets.json'), 'utf8')).api_key;
  }

  async json(path, { method = 'GET', body, headers = {} } = {}) {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: body !== undefined ? { 'content-type': 'application/json', ...headers } : headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, text };
  }

  /** A one-hour read token from the development helper. */
  async token(botId) {
    const r = await this.json('/api/dev/token', { method: 'POST', body: { bot_id: botId } });
    if (r.status !== 200) throw new Error(`dev token: ${r.status} ${r.text}`);
    return r.body.token;
  }

  /** A webhook through /api/dev/test-event (a seed type with a dot, else a status code). */
  async testEvent(botId, type) {
    const r = await this.json('/api/dev/test-event', { method: 'POST', body: { bot_id: botId, type } });
    if (r.status !== 200) throw new Error(`test-event: ${r.status} ${r.text}`);
    return r.body;
  }

  /** A webhook posted to the real route with the development API key. */
  async webhook(body) {
    const r = await this.json('/api/meeting-bot/webhook', {
      method: 'POST',
      body,
      headers: { 'x-meeting-baas-api-key': this.apiKey },
    });
    if (r.status !== 200) throw new Error(`webhook: ${r.status} ${r.text}`);
    return r.body;
  }

  /** A v1 bot.status_change for `botId`, unique by `n` (so never an idempotent duplicate). */
  async statusChange(botId, code, n) {
    return this.webhook({
      event: 'bot.status_change',
      data: { bot_id: botId, n, status: { code, created_at: new Date().toISOString() } },
    });
  }
}

/** A token minted by `relay token` with `secret` as RELAY_CLIENT_SECRET. */
export function mintToken(secret, bot, ttl = '1h') {
  const env = { ...process.env, RELAY_CLIENT_SECRET: secret };
  return execFileSync(RELAY_BIN, ['token', '--bot', bot, '--ttl', ttl], { env, encoding: 'utf8' }).trim();
}

/** A unique bot id per test. */
export function uniqueBot(label) {
  return `${label}-${Math.random().toString(16).slice(2, 10)}`;
}

/** A sessionStorage stand-in for Node. */
export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

/** A v1 `complete` of at least `bytes` bytes, with a transcript of speakers and word timings. */
export function bigV1Complete(botId, bytes) {
  const speakers = ['Ada Lovelace', 'Grace Hopper', 'Alan Turing'];
  const vocab = ['the', 'relay', 'ships', 'on', 'friday', 'webhooks', 'are', 'fast', 'okay', 'next'];
  const transcript = [];
  let t = 0.5;
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const words = [];
    for (let w = 0; w < 30; w++) {
      words.push({ start: +t.toFixed(3), end: +(t + 0.3).toFixed(3), word: vocab[(i * 7 + w) % vocab.length] });
      t += 0.35;
    }
    const seg = { speaker: speakers[i % speakers.length], offset: t, start_time: t, end_time: t + 10, words };
    size += JSON.stringify(seg).length;
    transcript.push(seg);
  }
  return {
    event: 'complete',
    data: {
      bot_id: botId,
      mp4: `https://bots-videos.s3.amazonaws.com/${botId}.mp4`,
      speakers,
      transcript,
      extra: { customer: 'acme' },
    },
  };
}
