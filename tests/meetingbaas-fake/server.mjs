// A fake MeetingBaaS API for the relay's control-route tests, checked against MeetingBaaS's own
// schemas: the zod schemas of the official SDK, @meeting-baas/sdk (pinned in package.json).
//
// Every request the relay sends is validated with the SDK's schema for its route, made strict
// all the way down (the SDK's object schemas let unknown fields through: a v1 `webhook_url` in a
// v2 body would pass unseen). Every answer this server gives is validated against the SDK's
// response schema too (at start-up and on each request): the relay is tested against what
// MeetingBaaS really answers, not against what the test hopes.
//
// Usage: node server.mjs [--port N]   (0, the default: any free port)
// Environment:
//   FAKE_MB_API_KEY          the key the relay must send in x-meeting-baas-api-key
//   FAKE_MB_CALLBACK_SECRET  the callback secret a v2 body must carry (recorded as matches or
//                            not, never the value)
// Prints one JSON line {"listening": <port>} on stdout once it accepts connections.
//
// Test endpoints:
//   GET  /__requests   every request so far: {method, path, headers (no secrets), api_key,
//                      callback_secret, schema, valid, issues, body (secrets redacted), status,
//                      response_valid}
//   POST /__reset      forget them
//   POST /__answer     {"mode": "ok"} | {"mode": "echo_error", "status": 422}: the next answers
//                      are errors whose message repeats the request's raw body and headers (as a
//                      careless upstream does), to prove the relay never passes our secrets on
//   POST /__bots       {"bot_id", "status", "updated_at"?, "error_code"?, "error_message"?,
//                      "recorded"?}: what MeetingBaaS knows of a bot (its status and details
//                      routes answer from it; a bot never set is unknown: 404)

import http from "node:http";
import {
  V2Zod,
  getMeetingDataQueryParams,
  getMeetingDataResponse,
  joinBody,
  joinResponse,
  leaveParams,
  leaveResponse,
} from "@meeting-baas/sdk";
// zod is pinned to the SDK's own exact version (package.json), so both share one copy.
import { z } from "zod";

const API_KEY = process.env.FAKE_MB_API_KEY ?? "";
const CALLBACK_SECRET = process.env.FAKE_MB_CALLBACK_SECRET ?? "";

/** The schema made strict at every level: unknown keys are refused in nested objects too. */
function deepStrict(schema) {
  const def = schema._def;
  switch (def.typeName) {
    case "ZodObject": {
      const shape = {};
      for (const [k, v] of Object.entries(schema.shape)) shape[k] = deepStrict(v);
      return z.object(shape).strict();
    }
    case "ZodOptional":
      return deepStrict(def.innerType).optional();
    case "ZodNullable":
      return deepStrict(def.innerType).nullable();
    case "ZodDefault":
      return deepStrict(def.innerType).default(def.defaultValue());
    case "ZodUnion":
      return z.union(def.options.map(deepStrict));
    case "ZodArray":
      return z.array(deepStrict(def.type));
    default:
      // Leaves (strings, numbers, enums, literals) and records (`extra`: any keys by design).
      return schema;
  }
}

// --- MeetingBaaS's schemas, from the SDK -------------------------------------------------------

const uuid = z.string().uuid();

const schemas = {
  // v1 (the SDK's default export names are the v1 API's): POST /bots/, DELETE /bots/{uuid}.
  v1Join: { body: deepStrict(joinBody), response: deepStrict(joinResponse) },
  v1Leave: { params: deepStrict(leaveParams), response: deepStrict(leaveResponse) },
  // EXTENDED: 6.0.5 has no schema for v1 `POST /accounts/webhook_url` (MEETINGBAAS.md: body
  // `{"webhook_url": "..."}`); this one is written from MeetingBaaS's documentation.
  v1AccountWebhook: {
    body: z.object({ webhook_url: z.string().url() }).strict(),
    response: z.object({ webhook_url: z.string().url() }).strict(),
  },
  // v2: POST /v2/bots.
  v2CreateBot: {
    body: deepStrict(V2Zod.createBotBody),
    // EXTENDED: 6.0.5 exports no zod schema for the create-bot answer (orval generated none for
    // its 201); this is its TypeScript type V2.CreateBotResponse: {success: true, data: {bot_id}}.
    response: z.object({ success: z.literal(true), data: z.object({ bot_id: uuid }).strict() }).strict(),
  },
  v2Leave: { params: deepStrict(V2Zod.leaveBotParams), response: deepStrict(V2Zod.leaveBotResponse) },
  v2Resend: {
    params: deepStrict(V2Zod.resendFinalWebhookParams),
    response: deepStrict(V2Zod.resendFinalWebhookResponse),
  },
  v2RetryCallback: {
    params: deepStrict(V2Zod.retryCallbackParams),
    body: deepStrict(V2Zod.retryCallbackBody),
    response: deepStrict(V2Zod.retryCallbackResponse),
  },
  // Reconciliation and fresh artifacts.
  v2Status: { params: deepStrict(V2Zod.getBotStatusParams), response: deepStrict(V2Zod.getBotStatusResponse) },
  v2Details: { params: deepStrict(V2Zod.getBotDetailsParams), response: deepStrict(V2Zod.getBotDetailsResponse) },
  v1MeetingData: { query: deepStrict(getMeetingDataQueryParams), response: deepStrict(getMeetingDataResponse) },
};
// Not extended here: 6.0.5's status enum (it lacks `retrying`, `pickup_delayed`,
// `awaiting_reconciliation` and the upper-case codes) and its `Z`-only times. The tests set
// only statuses and times the SDK's schemas accept, so every answer below passes them.

/** What MeetingBaaS knows of each bot (POST /__bots). */
const bots = new Map();
/** Each fetch signs its URLs anew, as MeetingBaaS's presigned links are. */
let signature = 0;

function url(bot, file) {
  signature += 1;
  return `https://storage.example.com/${bot}/${file}?X-Amz-Signature=${signature.toString(16).padStart(8, "0")}`;
}

function v2Status(bot) {
  const b = bots.get(bot);
  return {
    success: true,
    data: {
      bot_id: bot,
      status: b.status,
      transcription_status: b.status === "completed" ? "done" : "not-started",
      updated_at: b.updated_at,
    },
  };
}

function v2Details(bot) {
  const b = bots.get(bot);
  const recorded = b.recorded ?? b.status === "completed";
  return {
    success: true,
    data: {
      bot_id: bot,
      bot_name: "relay test",
      meeting_url: "https://meet.google.com/abc-defg-hij",
      meeting_platform: "meet",
      recording_mode: "speaker_view",
      status: b.status,
      created_at: "2026-12-01T09:00:00Z",
      joined_at: "2026-12-01T09:01:00Z",
      exited_at: recorded || b.status === "failed" ? b.updated_at : null,
      duration_seconds: recorded ? 1740 : null,
      participants: [{ name: "Ada", id: 1 }],
      speakers: [{ name: "Ada", id: 1 }],
      artifacts_deleted: false,
      video: recorded ? url(bot, "video.mp4") : null,
      audio: recorded ? url(bot, "audio.wav") : null,
      diarization: recorded ? url(bot, "diarization.jsonl") : null,
      raw_transcription: null,
      transcription: recorded ? url(bot, "transcription.json") : null,
      transcription_ids: null,
      transcription_provider: recorded ? "gladia" : null,
      error_code: b.error_code ?? null,
      error_message: b.error_message ?? null,
      extra: null,
      zoom_config: null,
    },
  };
}

function v1MeetingData(bot) {
  const b = bots.get(bot);
  const recorded = b.recorded ?? b.status === "completed";
  const ended = recorded || b.status === "failed" ? b.updated_at : null;
  return {
    audio: recorded ? url(bot, "audio.wav") : "",
    bot_data: {
      bot: {
        account_id: 1,
        bot_exited_at: ended,
        bot_joined_at: "2026-12-01T09:01:00Z",
        bot_name: "relay test",
        bot_param_id: 1,
        created_at: "2026-12-01T09:00:00Z",
        diarization_v2: false,
        ended_at: ended,
        errors: b.error_code ?? null,
        extra: {},
        id: 1,
        meeting_url: "https://meet.google.com/abc-defg-hij",
        mp4_s3_path: recorded ? `${bot}.mp4` : "",
        reserved: false,
        speech_to_text_api_key: "customer-stt-key-never-shown",
        transcription_custom_parameters: {},
        uuid: bot,
        webhook_url: "https://relay.example.com/api/meeting-bot/webhook",
      },
      transcripts: [],
    },
    duration: recorded ? 1740 : 0,
    meeting_participants_file: recorded ? url(bot, "participants.json") : "",
    mp4: recorded ? url(bot, "video.mp4") : "",
    speaker_diarization_file: recorded ? url(bot, "diarization.jsonl") : "",
    speaker_diarization_file_network: "",
  };
}

const BOT_ID = "7c0e7a4b-2f3d-4e5a-9b6c-1d2e3f4a5b6c";
const SAMPLE_BOT = "0b6a1f1e-8c2d-4f6a-9e3b-5d4c3b2a1f00";

/** The routes, each with its schemas and the answer MeetingBaaS gives. */
const routes = [
  { method: "POST", re: /^\/bots\/$/, name: "v1Join", body: true, answer: () => ({ bot_id: BOT_ID }) },
  { method: "DELETE", re: /^\/bots\/(?<uuid>[^/]+)$/, name: "v1Leave", answer: () => ({ ok: true }) },
  {
    method: "POST",
    re: /^\/accounts\/webhook_url$/,
    name: "v1AccountWebhook",
    body: true,
    answer: (body) => ({ webhook_url: body?.webhook_url }),
  },
  {
    method: "POST",
    re: /^\/v2\/bots$/,
    name: "v2CreateBot",
    body: true,
    answer: () => ({ success: true, data: { bot_id: BOT_ID } }),
  },
  {
    method: "POST",
    re: /^\/v2\/bots\/(?<bot_id>[^/]+)\/leave$/,
    name: "v2Leave",
    answer: () => ({ success: true, data: { message: "Bot is leaving the meeting" } }),
  },
  {
    method: "POST",
    re: /^\/v2\/bots\/(?<bot_id>[^/]+)\/resend-webhook$/,
    name: "v2Resend",
    answer: () => ({ success: true, data: { message: "Final webhook resent" } }),
  },
  { method: "GET", re: /^\/v2\/bots\/(?<bot_id>[^/]+)\/status$/, name: "v2Status", bot: true, answer: (_, bot) => v2Status(bot) },
  { method: "GET", re: /^\/v2\/bots\/(?<bot_id>[^/]+)$/, name: "v2Details", bot: true, answer: (_, bot) => v2Details(bot) },
  { method: "GET", re: /^\/bots\/meeting_data$/, name: "v1MeetingData", bot: true, answer: (_, bot) => v1MeetingData(bot) },
  {
    method: "POST",
    re: /^\/v2\/bots\/(?<bot_id>[^/]+)\/retry-callback$/,
    name: "v2RetryCallback",
    body: true,
    answer: () => ({ success: true, data: { message: "Callback retried" } }),
  },
];

// Our own answers must pass MeetingBaaS's response schemas before any test relies on them.
for (const [status, extra] of [
  ["in_call_recording", {}],
  ["completed", {}],
  ["failed", { error_code: "BOT_NOT_ACCEPTED", error_message: "The bot was not let in" }],
]) {
  bots.set(SAMPLE_BOT, { status, updated_at: "2026-12-01T09:30:00Z", ...extra });
  for (const [name, answer] of [
    ["v2Status", v2Status],
    ["v2Details", v2Details],
    ["v1MeetingData", v1MeetingData],
  ]) {
    const ok = schemas[name].response.safeParse(answer(SAMPLE_BOT));
    if (!ok.success) {
      console.error(`fake MeetingBaaS: its own ${name} answer (${status}) fails the SDK schema:`, ok.error.issues);
      process.exit(1);
    }
  }
}
bots.clear();
for (const route of routes.filter((r) => !r.bot)) {
  const sample = route.answer({ webhook_url: "https://relay.example.com/api/meeting-bot/webhook" });
  const ok = schemas[route.name].response.safeParse(sample);
  if (!ok.success) {
    console.error(`fake MeetingBaaS: its own ${route.name} answer fails the SDK schema:`, ok.error.issues);
    process.exit(1);
  }
}

// --- requests ------------------------------------------------------------------------------------

const requests = [];
let answerMode = { mode: "ok" };

const SECRET_HEADERS = new Set(["x-meeting-baas-api-key", "authorization", "x-mb-secret"]);

function issuesOf(result, where) {
  return result.success
    ? []
    : result.error.issues.map((i) => `${where}${i.path.length ? "." + i.path.join(".") : ""}: ${i.message}`);
}

/** The body with every `secret` value replaced: the record is shown in test failures. */
function redacted(value) {
  if (Array.isArray(value)) return value.map(redacted);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, k === "secret" && v != null ? "<redacted>" : redacted(v)]),
    );
  }
  return value;
}

function secretCheck(body) {
  const sent = body?.callback_config?.secret ?? body?.secret;
  if (sent === undefined || sent === null) return "missing";
  return sent === CALLBACK_SECRET ? "matches" : "mismatch";
}

function send(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function handle(req, res, raw) {
  const url = new URL(req.url, "http://fake");
  if (url.pathname === "/__requests" && req.method === "GET") return send(res, 200, requests);
  if (url.pathname === "/__reset" && req.method === "POST") {
    requests.length = 0;
    answerMode = { mode: "ok" };
    return send(res, 200, { reset: true });
  }
  if (url.pathname === "/__bots" && req.method === "POST") {
    const b = JSON.parse(raw || "{}");
    bots.set(b.bot_id, { updated_at: new Date().toISOString().replace(/\.\d+Z$/, "Z"), ...b });
    return send(res, 200, bots.get(b.bot_id));
  }
  if (url.pathname === "/__answer" && req.method === "POST") {
    answerMode = JSON.parse(raw || "{}");
    return send(res, 200, answerMode);
  }

  const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !SECRET_HEADERS.has(k)));
  const key = req.headers["x-meeting-baas-api-key"];
  const record = {
    method: req.method,
    path: url.pathname,
    query: url.search,
    headers,
    api_key: key === undefined ? "missing" : key === API_KEY ? "matches" : "mismatch",
    callback_secret: null,
    schema: null,
    valid: false,
    issues: [],
    body: null,
    status: 0,
    response_valid: null,
  };
  requests.push(record);

  let body;
  if (raw.length > 0) {
    try {
      body = JSON.parse(raw);
    } catch {
      record.issues.push("body is not JSON");
    }
  }
  record.body = redacted(body ?? null);

  const route = routes.find((r) => r.method === req.method && r.re.test(url.pathname));
  if (!route) {
    record.issues.push(`no MeetingBaaS route ${req.method} ${url.pathname}`);
    record.status = 404;
    return send(res, 404, { success: false, error: "Not Found", message: "route not found" });
  }
  const schema = schemas[route.name];
  record.schema = route.name;
  const params = url.pathname.match(route.re).groups ?? {};
  if (schema.params) record.issues.push(...issuesOf(schema.params.safeParse(params), "params"));
  let query;
  if (schema.query) {
    query = Object.fromEntries(
      [...url.searchParams].map(([k, v]) => [k, v === "true" ? true : v === "false" ? false : v]),
    );
    record.issues.push(...issuesOf(schema.query.safeParse(query), "query"));
  }
  const botId = params.bot_id ?? query?.bot_id;
  if (route.body) {
    if (body === undefined) record.issues.push("body: missing");
    else record.issues.push(...issuesOf(schema.body.safeParse(body), "body"));
    if (!/^application\/json\b/.test(req.headers["content-type"] ?? "")) {
      record.issues.push(`content-type: ${req.headers["content-type"] ?? "missing"}, not application/json`);
    }
    if (route.name.startsWith("v2")) record.callback_secret = secretCheck(body);
  } else if (raw.length > 0) {
    record.issues.push("body: this route takes none");
  }
  if (record.api_key !== "matches") record.issues.push(`x-meeting-baas-api-key: ${record.api_key}`);
  record.valid = record.issues.length === 0;

  if (answerMode.mode === "echo_error") {
    // A careless upstream repeating what it was sent, headers included.
    const status = answerMode.status ?? 422;
    record.status = status;
    return send(res, status, {
      success: false,
      error: "Validation failed",
      message: `invalid request ${raw} sent with ${JSON.stringify(req.headers)}`,
    });
  }
  if (!record.valid) {
    // MeetingBaaS refuses what its schema refuses; the test fails on the record anyway.
    record.status = 400;
    return send(res, 400, { success: false, error: "Bad Request", message: record.issues.join("; ") });
  }
  record.bot_id = botId ?? null;
  if (route.bot && !bots.has(botId)) {
    record.status = 404;
    return send(res, 404, { success: false, error: "Not Found", message: "Bot not found" });
  }
  const answer = route.answer(body, botId);
  const checked = schema.response.safeParse(answer);
  record.response_valid = checked.success;
  if (!checked.success) record.issues.push(...issuesOf(checked, "response"));
  record.status = 200;
  return send(res, 200, answer);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    try {
      handle(req, res, Buffer.concat(chunks).toString("utf8"));
    } catch (e) {
      send(res, 500, { error: String(e) });
    }
  });
});

const portArg = process.argv.indexOf("--port");
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 0;
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.close(() => process.exit(0)));
