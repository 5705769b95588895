"""moto server, one request at a time.

moto's backends are not thread-safe: two concurrent `UpdateItem ... ADD count :1` on one item can
lose an increment, and two conditional `PutItem`s can both succeed. Real DynamoDB applies each
request atomically, and herald's exactly-once guarantees rest on that, so this launcher serialises
request handling (connections are still accepted concurrently).

Usage: python infra/moto_server.py [-H host] [-p port]
"""

import argparse
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def serialized(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            # Materialise the body inside the lock: the response is computed lazily otherwise.
            return list(app(environ, start_response))

    return handle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5050)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
