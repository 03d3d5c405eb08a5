"""moto's DynamoDB-API server with its request handling serialised.

Stock moto_server serves requests on threads with no lock around its backends, and its
TransactWriteItems checks and applies items one at a time (rolling back by restoring a copy of
the table), so concurrent transactions can interleave in ways DynamoDB never allows. One lock
around moto's own WSGI app makes every request atomic, which is what the store contract tests
need from a DynamoDB stand-in. Usage: python moto_server.py PORT
"""

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


def app(environ, start_response):
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
