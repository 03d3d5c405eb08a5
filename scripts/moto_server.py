"""moto's DynamoDB-API server with its request handling serialised.

Stock moto_server serves requests on threads with no lock around its backends, and its
TransactWriteItems checks and applies items one at a time (rolling back by restoring a copy of
the table), so concurrent transactions can interleave in ways DynamoDB never allows. One lock
around moto's own WSGI app makes every request atomic, which is what the store contract tests
need from a DynamoDB stand-in. Usage: python moto_server.py PORT

For the benchmarks it also counts the operations it serves (the `X-Amz-Target` header, e.g.
`DynamoDB_20120810.Query`), in all and per table (the request's top-level `TableName`), and
answers `GET /_relay/op-counts` with them as JSON:
`{"total": {"Query": 12, …}, "by_table": {"Query": {"events": 2, "conns": 10}, …}}`.
"""

import io
import json
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

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


def app(environ, start_response):
    if environ.get("PATH_INFO") == OP_COUNTS_PATH and environ.get("REQUEST_METHOD") == "GET":
        return op_counts(start_response)
    count(environ)
    with lock:
        return list(inner(environ, start_response))


if __name__ == "__main__":
    run_simple(
        "127.0.0.1",
        int(sys.argv[1]),
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
