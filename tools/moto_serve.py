"""Entry point of the local AWS emulator: moto's server with serialisable DynamoDB writes.

Real DynamoDB applies a transaction atomically and in isolation. moto's threaded
server does not: two concurrent TransactWriteItems can interleave, and a cancelled
one restores a table snapshot that erases the other's committed writes. Tests of
concurrent claims would then measure the emulator, not the pipeline, so DynamoDB
requests are served one at a time here. Other services (SQS long polls above all)
stay concurrent.
"""

from __future__ import annotations

import argparse
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def serialised_dynamodb(app):
    lock = threading.Lock()

    def wsgi(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return app(environ, start_response)
        with lock:
            # Consume the body inside the lock so the whole request is isolated.
            return list(app(environ, start_response))

    return wsgi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialised_dynamodb(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
