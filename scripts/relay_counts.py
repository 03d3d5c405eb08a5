"""Billing counts for scripts/moto_server.py: what each request would cost on AWS.

Every request with an `X-Amz-Target` (DynamoDB, DynamoDB Streams, Secrets Manager) is counted by
service, operation and table (for Secrets Manager: the secret id). DynamoDB requests also count
the items they write or read, the items' sizes and the units DynamoDB's on-demand mode bills:

- item size: attribute names plus values (a number: 1 byte per 2 significant digits + 1; a
  binary: its decoded bytes; a list or map: 3 bytes + 1 per element, plus a map's key names);
- a write (PutItem, DeleteItem, UpdateItem, each BatchWriteItem request) bills 1 WCU per KB of
  the larger of the item before and after, at least 1; inside TransactWriteItems every item
  (ConditionCheck included) bills twice that;
- a read bills 1 RCU per 4 KB, at least 1, half of that when eventually consistent (every read
  of a global secondary index), twice that inside TransactGetItems. GetItem and each item of
  BatchGetItem/TransactGetItems are rounded one by one; a Query is rounded once, on the sum of
  the items it read before its filter and projection (which do not lower the bill).

Only requests answered 2xx are billed; the others count under `errors`. Streams and Secrets
Manager requests are counted, with the records a GetRecords returned as its items.
"""

import base64
import inspect
import io
import json
import math
import re
import threading

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

COUNTS_PATH = "/_relay/counts"
RESET_PATH = "/_relay/reset"
PATHS = (COUNTS_PATH, RESET_PATH)

SERVICES = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
    "secretsmanager": "secretsmanager",
}
READS = {"GetItem", "Query", "BatchGetItem", "TransactGetItems"}

rows = {}  # (service, operation, table) -> counts
rows_lock = threading.Lock()
reading = threading.local()  # .sizes: [(table, size)] of the request being served, or None


# ---------------------------------------------------------------------------------------------
# Sizes as DynamoDB bills them
# ---------------------------------------------------------------------------------------------
def number_size(text):
    digits = text.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0")
    return (max(len(digits), 1) + 1) // 2 + 1


def binary_size(value):
    return len(value) if isinstance(value, (bytes, bytearray)) else len(base64.b64decode(value))


def value_size(value):
    kind, v = next(iter(value.items()))
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return binary_size(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(number_size(n) for n in v)
    if kind == "BS":
        return sum(binary_size(b) for b in v)
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in v.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item):
    """Size of an item in the wire form ({name: {"S": ...}, ...})."""
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def stored_size(item):
    """Size of one of moto's stored items."""
    return sum(len(n.encode()) + value_size(v.to_regular_json()) for n, v in item.attrs.items())


def write_units(size, transactional=False):
    return math.ceil(max(size, 1) / 1024) * (2 if transactional else 1)


def read_units(size, consistent, transactional=False):
    units = math.ceil(max(size, 1) / 4096)
    if transactional:
        return units * 2
    return units if consistent else units / 2


# ---------------------------------------------------------------------------------------------
# What a read request read: moto's table reads, seen before projection and filter
# ---------------------------------------------------------------------------------------------
stock_get_item = Table.get_item
stock_query = Table.query
query_signature = inspect.signature(stock_query)


def get_item(self, hash_key, range_key=None, projection_expression=None):
    sizes = getattr(reading, "sizes", None)
    if sizes is not None:
        whole = stock_get_item(self, hash_key, range_key)
        sizes.append((self.name, stored_size(whole) if whole else 0))
    return stock_get_item(self, hash_key, range_key, projection_expression)


def query(self, *args, **kwargs):
    sizes = getattr(reading, "sizes", None)
    if sizes is not None:
        bound = query_signature.bind(self, *args, **kwargs)
        bound.arguments["projection_expressions"] = None
        bound.arguments["filter_expression"] = None
        read, _, _ = stock_query(*bound.args, **bound.kwargs)
        sizes.extend((self.name, stored_size(i)) for i in read)
        if not read:
            sizes.append((self.name, 0))  # an empty Query still bills its minimum
    return stock_query(self, *args, **kwargs)


def install():
    """Counts from now on (scripts/moto_server.py calls it when started with --counts)."""
    Table.get_item = get_item
    Table.query = query


# ---------------------------------------------------------------------------------------------
# Counting one request
# ---------------------------------------------------------------------------------------------
def add(service, op, table, requests=0, errors=0, items=0, size=0, wcu=0, rcu=0):
    with rows_lock:
        row = rows.setdefault(
            (service, op, table),
            {"requests": 0, "errors": 0, "items": 0, "bytes": 0, "wcu": 0, "rcu": 0},
        )
        row["requests"] += requests
        row["errors"] += errors
        row["items"] += items
        row["bytes"] += size
        row["wcu"] += wcu
        row["rcu"] += rcu


def region_of(environ):
    m = re.search(r"Credential=[^/]+/\d+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else "us-east-1"


def existing_size(backend, table_name, key):
    """Size of the stored item with that key (attributes beyond the key are ignored), else 0."""
    table = backend.tables.get(table_name)
    if table is None:
        return 0
    try:
        h = DynamoType(key[table.hash_key_attr])
        r = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        item = stock_get_item(table, h, r)
    except Exception:  # a malformed key: moto's own validation answers it
        return 0
    return stored_size(item) if item else 0


def write_targets(op, req):
    """(table, kind, key, new item or None, transactional) of every item a write names."""
    if op in ("PutItem", "DeleteItem", "UpdateItem"):
        kind = op[:-4]
        yield req.get("TableName"), kind, req.get("Item") or req.get("Key") or {}, req.get(
            "Item"
        ), False
    elif op == "BatchWriteItem":
        for table, entries in (req.get("RequestItems") or {}).items():
            for e in entries:
                if "PutRequest" in e:
                    yield table, "Put", e["PutRequest"]["Item"], e["PutRequest"]["Item"], False
                elif "DeleteRequest" in e:
                    yield table, "Delete", e["DeleteRequest"]["Key"], None, False
    elif op == "TransactWriteItems":
        for e in req.get("TransactItems") or []:
            kind, body = next(iter(e.items()))
            yield body.get("TableName"), kind, body.get("Item") or body.get("Key") or {}, body.get(
                "Item"
            ), True


def count_write(backend, op, req, ok, before):
    """`before`: the sizes of the named items before the request, in write_targets' order."""
    touched = set()
    for (table, kind, key, new, transactional), old in zip(write_targets(op, req), before):
        touched.add(table)
        if not ok:
            continue
        size = old
        if new is not None:
            size = max(size, item_size(new))
        if kind == "Update":
            size = max(size, existing_size(backend, table, key))
        add("dynamodb", op, table, items=1, size=size, wcu=write_units(size, transactional))
    return touched


def count_read(op, req, ok, sizes):
    if op == "Query" or op == "GetItem":
        table = req.get("TableName")
        consistent = bool(req.get("ConsistentRead")) and not req.get("IndexName")
        if ok:
            total = sum(s for _, s in sizes)
            found = sum(1 for _, s in sizes if s)
            units = (
                sum(read_units(s, consistent) for _, s in sizes)
                if op == "GetItem"
                else read_units(total, consistent)
            )
            add("dynamodb", op, table, items=found, size=total, rcu=units)
        return {table}
    if op == "BatchGetItem":
        per_table = req.get("RequestItems") or {}
        if ok:
            for table, size in sizes:
                consistent = bool(per_table.get(table, {}).get("ConsistentRead"))
                add(
                    "dynamodb",
                    op,
                    table,
                    items=1 if size else 0,
                    size=size,
                    rcu=read_units(size, consistent),
                )
        return set(per_table)
    # TransactGetItems
    if ok:
        for table, size in sizes:
            add(
                "dynamodb",
                op,
                table,
                items=1 if size else 0,
                size=size,
                rcu=read_units(size, True, True),
            )
    return {e.get("Get", {}).get("TableName") for e in req.get("TransactItems") or []}


def serve(inner, environ, start_response):
    """Serves one request through moto's app (under the server's lock) and counts it."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if not target:
        return list(inner(environ, start_response))
    prefix, _, op = target.rpartition(".")
    service = SERVICES.get(prefix, prefix or "unknown")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        req = {}
    if not isinstance(req, dict):
        req = {}

    status = []

    def capture(code, headers, exc_info=None):
        status.append(int(code.split()[0]))
        return start_response(code, headers, exc_info)

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region_of(environ)]
    is_write = service == "dynamodb" and op in (
        "PutItem",
        "DeleteItem",
        "UpdateItem",
        "BatchWriteItem",
        "TransactWriteItems",
    )
    before = (
        [existing_size(backend, t, k) for t, _, k, _, _ in write_targets(op, req)]
        if is_write
        else []
    )
    reading.sizes = [] if service == "dynamodb" and op in READS else None
    try:
        out = list(inner(environ, capture))
        sizes = reading.sizes
    finally:
        reading.sizes = None
    ok = bool(status) and 200 <= status[0] < 300

    if is_write:
        tables = count_write(backend, op, req, ok, before)
    elif sizes is not None:
        tables = count_read(op, req, ok, sizes)
    elif service == "dynamodbstreams":
        m = re.search(rb"table/([^/\"]+)/stream", body)
        tables = {m.group(1).decode() if m else "-"}
        if ok and op == "GetRecords":
            try:
                records = len(json.loads(b"".join(out)).get("Records", []))
            except ValueError:
                records = 0
            add(service, op, next(iter(tables)), items=records)
    elif service == "secretsmanager":
        tables = {req.get("SecretId") or req.get("Name") or "-"}
    else:
        tables = {req.get("TableName") or "-"}
    for table in tables or {"-"}:
        add(service, op, table or "-", requests=1, errors=0 if ok else 1)
    return out


def snapshot():
    with rows_lock:
        return {
            "rows": [
                {"service": s, "operation": o, "table": t, **dict(c)}
                for (s, o, t), c in sorted(rows.items())
            ]
        }


def answer(path, method, start_response, reset_others):
    """GET /_relay/counts, POST /_relay/reset."""
    if path == COUNTS_PATH and method == "GET":
        body = json.dumps(snapshot()).encode()
    elif path == RESET_PATH and method == "POST":
        with rows_lock:
            rows.clear()
        reset_others()
        body = b'{"reset":true}'
    else:
        body = b'{"error":"method not allowed"}'
        start_response(
            "405 Method Not Allowed",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
