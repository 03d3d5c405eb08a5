"""schemathesis hooks for scripts/check-openapi.

Every generated webhook delivery is sent as MeetingBaaS sends it, authenticated by one of the
three schemes of the webhook route, taken in turn: the v1 API key header, a v2 Standard
Webhooks (Svix) signature made with the `standardwebhooks` library (under the `webhook-*` or the
`svix-*` header names), and the v2 callback secret. The body that is signed is the exact bytes
sent. The check `no_server_error_beyond_the_contract` refuses any 5xx but the ones the contract
has for a route when MeetingBaaS refuses (502) or the route is not in the configured API version
(501), and only where the document lists them.

Settings (environment, set by scripts/check-openapi): CHECK_OPENAPI_API_KEY,
CHECK_OPENAPI_WEBHOOK_SECRET, CHECK_OPENAPI_CALLBACK_SECRET.
"""

import itertools
import json
import os
import threading
import time
import uuid
from datetime import datetime, timezone

import schemathesis
from schemathesis.core import NotSet
from standardwebhooks.webhooks import Webhook

WEBHOOK_PATH = "/api/meeting-bot/webhook"
API_KEY = os.environ["CHECK_OPENAPI_API_KEY"]
WEBHOOK_SECRET = os.environ["CHECK_OPENAPI_WEBHOOK_SECRET"]
CALLBACK_SECRET = os.environ["CHECK_OPENAPI_CALLBACK_SECRET"]
SIGNER = Webhook(WEBHOOK_SECRET)
AUTH_HEADERS = {
    "x-meeting-baas-api-key",
    "x-mb-secret",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
}
SCHEMES = itertools.cycle(["api_key", "webhook", "svix", "callback"])
LOCK = threading.Lock()
# The 5xx statuses the contract has, and where: a MeetingBaaS refusal or an unreachable
# MeetingBaaS comes back as 502; a call the configured MeetingBaaS API version lacks is 501.
DOCUMENTED_SERVER_ERRORS = {501, 502}


def _body_bytes(case):
    """The bytes to send for the case's body (JSON bodies compact, non-ASCII escaped)."""
    body = case.body
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", errors="surrogatepass")
    return json.dumps(body, separators=(",", ":")).encode("ascii")


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != WEBHOOK_PATH:
        return
    media_type = case.media_type or "application/json"
    if "json" not in media_type:
        # A body of another media type: sent as generated (the relay answers 415 unsigned too).
        return
    body = _body_bytes(case)
    with LOCK:
        scheme = next(SCHEMES)
    extra = {k: v for k, v in (case.headers or {}).items() if k.lower() not in AUTH_HEADERS}
    if scheme == "api_key":
        extra["x-meeting-baas-api-key"] = API_KEY
    elif scheme == "callback":
        extra["x-mb-secret"] = CALLBACK_SECRET
    else:
        msg_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.fromtimestamp(int(time.time()), tz=timezone.utc)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8: no Standard Webhooks signature can cover these bytes; the key instead.
            text = None
        if text is None:
            extra["x-meeting-baas-api-key"] = API_KEY
        else:
            signature = SIGNER.sign(msg_id, now, text)
            prefix = "webhook" if scheme == "webhook" else "svix"
            extra[f"{prefix}-id"] = msg_id
            extra[f"{prefix}-timestamp"] = str(int(now.timestamp()))
            extra[f"{prefix}-signature"] = signature
    case.headers = extra
    # The signed bytes are the bytes sent.
    kwargs["data"] = body


def _scheme_of(headers):
    names = {k.lower() for k in (headers or {})}
    for name, scheme in [
        ("x-meeting-baas-api-key", "api_key"),
        ("x-mb-secret", "callback"),
        ("webhook-signature", "webhook"),
        ("svix-signature", "svix"),
    ]:
        if name in names:
            return scheme
    return None


@schemathesis.hook
def after_call(context, case, response):
    """One line per answer in CHECK_OPENAPI_RECORD: scripts/check-openapi checks the run reached
    the relay's logic (signed deliveries accepted under every scheme, a bot's status read)."""
    record = os.environ.get("CHECK_OPENAPI_RECORD")
    if not record:
        return
    line = {
        "method": case.method,
        "path": case.operation.path,
        "status": response.status_code,
        "scheme": _scheme_of(case.headers) if case.operation.path == WEBHOOK_PATH else None,
    }
    with LOCK, open(record, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


@schemathesis.check
def no_server_error_beyond_the_contract(ctx, response, case):
    """No 5xx but a documented 501/502 (the store is up and MeetingBaaS answers)."""
    status = response.status_code
    if status < 500:
        return None
    documented = case.operation.definition.raw.get("responses", {})
    if status in DOCUMENTED_SERVER_ERRORS and str(status) in documented:
        return None
    raise AssertionError(
        f"{case.method} {case.operation.path} answered {status}: a server error the contract "
        f"does not have here ({response.text[:300]!r})"
    )
