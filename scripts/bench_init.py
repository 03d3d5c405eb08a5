"""Cold start of the Lambda bootstraps: spawn to the first `GET /2018-06-01/runtime/invocation/next`
of a stub Lambda Runtime API (init), then the first invocation (the event handed out by that GET
until its response is posted), for each function beside the hello-world bootstrap, alternated
spawn by spawn in one run. Run by scripts/bench-init, which starts moto and passes its endpoint.

Usage: python bench_init.py BIN_DIR ROUNDS MOTO_ENDPOINT [env|arn]
  env: the secrets come from the functions' environment (as `relay serve` has them);
  arn: from a Secrets Manager secret on moto named by RELAY_SECRETS_ARN (as on AWS).
"""

import base64
import hashlib
import hmac
import json
import os
import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

bin_dir, rounds, moto, secrets_mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], (sys.argv[4:] or ["env"])[0]
FUNCTIONS = ["hello", "webhook", "connections", "fanout", "api", "reconcile"]
API_KEY = "bench-api-key"
CLIENT_SECRET = "bench-client-secret-0123456789abcdef0123456789"
BOT = "8f0f6c1e-2a7d-4d1b-9c55-0f6f7e3b1a21"
aws = dict(endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
           aws_secret_access_key="testing")
suffix = uuid.uuid4().hex[:8]
events_table, connections_table = f"bench-events-{suffix}", f"bench-connections-{suffix}"


def create_tables():
    db = boto3.client("dynamodb", **aws)
    for name, events in ((events_table, True), (connections_table, False)):
        keys = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
        extra = {}
        if events:
            # The stream the fan-out reads and the open-session index the reconciliation queries
            # (template.yaml's EventsTable).
            extra = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
                     "GlobalSecondaryIndexes": [{
                         "IndexName": "open-sessions",
                         "KeySchema": [{"AttributeName": "open_pk", "KeyType": "HASH"},
                                       {"AttributeName": "open_sk", "KeyType": "RANGE"}],
                         "Projection": {"ProjectionType": "INCLUDE",
                                        "NonKeyAttributes": ["status", "expires_at"]}}]}
            keys += [{"AttributeName": "open_pk", "AttributeType": "S"},
                     {"AttributeName": "open_sk", "AttributeType": "S"}]
        db.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=keys, **extra)
    return db


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token():
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": "bench", "exp": int(time.time()) + 3600, "bots": ["*"],
                                "scope": "read"}).encode())
    sig = hmac.new(CLIENT_SECRET.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest()
    return f"{head}.{claims}.{b64url(sig)}"


def http_v2(method, path, headers, body=""):
    now = int(time.time() * 1000)
    return {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", **headers},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123", "requestId": str(uuid.uuid4()), "routeKey": f"{method} {path}",
            "stage": "$default", "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()), "timeEpoch": now,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "MeetingBaaS-Webhook/1.0"},
        },
        "body": body, "isBase64Encoded": False,
    }


def webhook_event(seq):
    body = json.dumps({"event": "bot.status_change", "data": {"bot_id": BOT, "status": {
        "code": "in_call_recording", "created_at": f"2026-11-29T09:{seq // 60 % 60:02d}:{seq % 60:02d}.000Z"}}})
    return http_v2("POST", "/api/meeting-bot/webhook",
                   {"content-type": "application/json", "x-meeting-baas-api-key": API_KEY,
                    "content-length": str(len(body))}, body)


def connect_event(seq):
    now = int(time.time() * 1000)
    return {
        "headers": {"Host": "ws123.execute-api.us-east-1.amazonaws.com", "Sec-WebSocket-Version": "13"},
        "multiValueHeaders": {}, "queryStringParameters": {"token": token()},
        "requestContext": {
            "routeKey": "$connect", "eventType": "CONNECT", "extendedRequestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()), "messageDirection": "IN",
            "stage": "prod", "connectedAt": now, "requestTimeEpoch": now, "identity": {"sourceIp": "203.0.113.7"},
            "requestId": str(uuid.uuid4()), "domainName": "ws123.execute-api.us-east-1.amazonaws.com",
            "connectionId": f"bench{seq:06d}=", "apiId": "ws123",
        },
        "isBase64Encoded": False,
    }


def status_event(_seq):
    return http_v2("GET", f"/api/meeting-bot/{BOT}/status", {"authorization": f"Bearer {token()}"})


def to_stream_json(value):
    """boto3's deserialised attribute (bytes for B) back into DynamoDB stream JSON (base64 B)."""
    (kind, v), = value.items()
    if kind == "B":
        return {"B": base64.b64encode(v).decode()}
    if kind == "M":
        return {"M": {k: to_stream_json(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [to_stream_json(x) for x in v]}
    return {kind: v}


def stream_event_from(db):
    items = db.scan(TableName=events_table)["Items"]
    item = next(i for i in items if i.get("kind", {}).get("S") == "event")
    image = {k: to_stream_json(v) for k, v in item.items()}

    def make(seq):
        return {"Records": [{
            "eventID": uuid.uuid4().hex, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {"ApproximateCreationDateTime": time.time(), "Keys": {"pk": image["pk"], "sk": image["sk"]},
                         "NewImage": image, "SequenceNumber": f"{seq:021d}", "SizeBytes": 512,
                         "StreamViewType": "NEW_IMAGE"},
            "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{events_table}/stream/2026-11-29T00:00:00.000",
        }]}
    return make


class Stub(BaseHTTPRequestHandler):
    """One spawn at a time: the Runtime API (next, response, error) and a management API that
    answers every @connections post."""
    state = {}
    lock = threading.Lock()

    def log_message(self, *_):
        pass

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        now = time.perf_counter_ns()
        if self.path != "/2018-06-01/runtime/invocation/next":
            return self.reply(404)
        s = Stub.state
        with Stub.lock:
            first = "next_at" not in s
            if first:
                s["next_at"] = now
        if not first:
            s["second_next"].set()
            s["done"].wait(30)
            return  # the process is gone: nothing to answer
        body = json.dumps(s["event"]).encode()
        s["served_at"] = time.perf_counter_ns()
        self.reply(200, body, [
            ("Lambda-Runtime-Aws-Request-Id", s["request_id"]),
            ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000)),
            ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench"),
            ("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"),
            ("content-type", "application/json")])

    def do_POST(self):
        now = time.perf_counter_ns()
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        s = Stub.state
        if self.path.startswith("/2018-06-01/runtime/invocation/"):
            s["answered_at"] = now
            s["outcome"] = self.path.rsplit("/", 1)[1]
            s["response"] = body
            self.reply(202, b'{"status":"OK"}')
            s["answered"].set()
        elif self.path.startswith("/2018-06-01/runtime/init/error"):
            s["response"] = body
            s["outcome"] = "init-error"
            self.reply(202, b'{"status":"OK"}')
            s["answered"].set()
        else:
            self.reply(200)


def main():
    db = create_tables()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "info",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}", "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL_DYNAMODB": moto, "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto,
        "EVENTS_TABLE": events_table, "CONNECTIONS_TABLE": connections_table,
        "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{port}/prod",
        "PUBLIC_BASE_URL": "https://abc123.execute-api.us-east-1.amazonaws.com",
    }
    secrets = {"MEETINGBAAS_API_KEY": API_KEY, "RELAY_CLIENT_SECRET": CLIENT_SECRET}
    if secrets_mode == "arn":
        sm = boto3.client("secretsmanager", **aws)
        arn = sm.create_secret(Name=f"bench-relay-{suffix}", SecretString=json.dumps(
            {**secrets, "MEETINGBAAS_WEBHOOK_SECRET": "", "MEETINGBAAS_CALLBACK_SECRET": ""}))["ARN"]
        base["RELAY_SECRETS_ARN"] = arn
    else:
        base.update(secrets)
    # The scheduler's event (a schedule without an Input: an empty object); the pass finds the
    # webhook's session not idle yet and asks MeetingBaaS nothing.
    events = {"hello": lambda seq: {"hello": seq}, "webhook": webhook_event,
              "connections": connect_event, "api": status_event, "reconcile": lambda seq: {}}
    results = {f: {"init": [], "first": []} for f in FUNCTIONS}
    # BENCH_LOG=FILE: the functions' log lines go there (to see why an invocation failed).
    devnull = os.open(os.environ.get("BENCH_LOG") or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def spawn(name, seq):
        s = Stub.state = {"event": events[name](seq), "request_id": str(uuid.uuid4()),
                          "answered": threading.Event(), "second_next": threading.Event(),
                          "done": threading.Event()}
        env = dict(base)
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(os.path.join(bin_dir, name), [name], env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
        ok = s["answered"].wait(30)
        s["second_next"].wait(5)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        s["done"].set()
        if not ok or s.get("outcome") != "response":
            sys.exit(f"{name}: no response to the first invocation ({s.get('outcome')}): {s.get('response')!r}")
        reply = json.loads(s["response"] or b"null")
        if isinstance(reply, dict) and "statusCode" in reply and reply["statusCode"] >= 300:
            sys.exit(f"{name}: the first invocation answered {reply}")
        return (s["next_at"] - t0) / 1e6, (s["answered_at"] - s["served_at"]) / 1e6

    # The fan-out's event is a real stream image of the item the webhook stored.
    spawn("webhook", 0)
    events["fanout"] = stream_event_from(db)
    for r in range(rounds):
        order = FUNCTIONS if r % 2 == 0 else FUNCTIONS[::-1]
        for name in order:
            init, first = spawn(name, r + 1)
            results[name]["init"].append(init)
            results[name]["first"].append(first)
    floor = statistics.median(results["hello"]["init"])
    print(f"secrets from: {secrets_mode}; rounds: {rounds}; bin dir: {bin_dir}")
    print(f"{'function':<12} {'size MiB':>8} {'init ms':>8} {'x hello':>8} {'first inv ms':>13}")
    for name in FUNCTIONS:
        init = statistics.median(results[name]["init"])
        first = statistics.median(results[name]["first"])
        size = os.path.getsize(os.path.join(bin_dir, name)) / 1048576
        print(f"{name:<12} {size:>8.2f} {init:>8.2f} {init / floor:>8.2f} {first:>13.2f}")
    server.shutdown()


main()
