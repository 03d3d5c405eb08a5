"""moto's DynamoDB-API server with its request handling serialised.

Stock moto_server serves requests on threads with no lock around its backends, and its
TransactWriteItems checks and applies items one at a time (rolling back by restoring a copy of
the table), so concurrent transactions can interleave in ways DynamoDB never allows. One lock
around moto's own WSGI app makes every request atomic, which is what the store contract tests
need from a DynamoDB stand-in.

Its TransactWriteItems also rolls back item by item, in place. Stock moto backs up every table a
transaction names with a deep copy (all items and the whole stream history, so each transaction
costs more as the table grows) and on a cancellation swaps the copy in: the stream shard that open
shard iterators hold is then no longer the table's, and they never see another record. DynamoDB's
streams do not stop after a cancelled transaction, so the relay's stream reader must not either.

For the benchmarks it also counts the operations it serves (the `X-Amz-Target` header, e.g.
`DynamoDB_20120810.Query`), in all and per table (the request's top-level `TableName`), and
answers `GET /_relay/op-counts` with them as JSON:
`{"total": {"Query": 12, …}, "by_table": {"Query": {"events": 2, "conns": 10}, …}}`.

For docs/scale.md it also keeps billing counts (scripts/relay_counts.py): every DynamoDB,
DynamoDB Streams and Secrets Manager request by service, operation and table, with the items
each one wrote or read inside it (TransactItems and RequestItems included), their sizes and the
write and read units DynamoDB would bill, when started with `--counts` (reading what a read
request read costs moto a second lookup, so it is off otherwise). `GET /_relay/counts` answers
them as JSON, `POST /_relay/reset` sets every count (op-counts too) back to zero.
Usage: python moto_server.py PORT [--counts]
"""

import copy
import io
import json
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

import relay_counts

stock_transact_write_items = DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    """moto's TransactWriteItems with an in-place, per-item rollback (see the module doc)."""
    saved = []  # (table, hash key, range key, the item before, or None)
    shards = {}  # table name -> (its stream shard, the shard's length before)
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = self.tables[op["TableName"]]
            key = op["Item"] if op_type == "Put" else op["Key"]
            h = DynamoType(key[table.hash_key_attr])
            r = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except (KeyError, TypeError, AttributeError, StopIteration):
            continue  # moto's own validation answers for a malformed entry
        saved.append((table, h, r, copy.deepcopy(table.get_item(h, r))))
        if table.stream_shard is not None:
            shards.setdefault(table.name, (table.stream_shard, len(table.stream_shard.items)))
    tables = {id(t): t for t, _, _, _ in saved}.values()
    for t in tables:
        t.__deepcopy__ = lambda memo, t=t: t  # moto's whole-table backup becomes a no-op
    try:
        return stock_transact_write_items(self, transact_items)
    except Exception:
        for table, h, r, before in reversed(saved):
            if r is None:
                if before is None:
                    table.items.pop(h, None)
                else:
                    table.items[h] = before
            elif before is None:
                table.items[h].pop(r, None)
            else:
                table.items[h][r] = before
        for shard, length in shards.values():
            del shard.items[length:]
        raise
    finally:
        for t in tables:
            del t.__deepcopy__


DynamoDBBackend.transact_write_items = transact_write_items

inner = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

OP_COUNTS_PATH = "/_relay/op-counts"
counts_lock = threading.Lock()
op_totals = {}
op_by_table = {}


def count(environ):
    """Counts one request by operation and table; leaves its body readable for moto."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if not target:
        return
    op = target.rsplit(".", 1)[-1]
    table = "-"
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > 0:
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            table = json.loads(body).get("TableName") or "-"
        except (ValueError, AttributeError):
            pass
    with counts_lock:
        op_totals[op] = op_totals.get(op, 0) + 1
        per = op_by_table.setdefault(op, {})
        per[table] = per.get(table, 0) + 1


def op_counts(start_response):
    with counts_lock:
        body = json.dumps({"total": op_totals, "by_table": op_by_table}).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def reset():
    with counts_lock:
        op_totals.clear()
        op_by_table.clear()


def app(environ, start_response):
    path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
    if path == OP_COUNTS_PATH and method == "GET":
        return op_counts(start_response)
    if COUNTING and path in relay_counts.PATHS:
        with lock:
            return relay_counts.answer(path, method, start_response, reset)
    count(environ)
    with lock:
        if COUNTING:
            return relay_counts.serve(inner, environ, start_response)
        return list(inner(environ, start_response))


COUNTING = "--counts" in sys.argv[2:]
if COUNTING:
    relay_counts.install()

if __name__ == "__main__":
    run_simple(
        "127.0.0.1",
        int(sys.argv[1]),
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
