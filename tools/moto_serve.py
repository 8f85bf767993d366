"""Entry point of the local AWS emulator: moto's server with serialisable DynamoDB writes.

Real DynamoDB applies a transaction atomically and in isolation. moto's threaded
server does not: two concurrent TransactWriteItems can interleave, and a cancelled
one restores a table snapshot that erases the other's committed writes. Tests of
concurrent claims would then measure the emulator, not the pipeline, so DynamoDB
requests are served one at a time here. Other services (SQS long polls above all)
stay concurrent.

Two more changes keep moto's DynamoDB usable with tens of thousands of items
without changing any result: moto keeps every model instance for its dashboard
(so every item and table copy stayed in memory for good), and its
TransactWriteItems backs a table up once per action (100 whole-table copies per
claim) where once per table and transaction restores the same state.
"""

from __future__ import annotations

import argparse
import copy
import threading
import types

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


class _Untracked(list):
    def append(self, _instance) -> None:
        pass


def lean_dynamodb() -> None:
    from moto.core.model_instances import model_data
    from moto.dynamodb import models

    for model in model_data["dynamodb"].values():
        model.instances_tracked = _Untracked()
    transact = models.DynamoDBBackend.transact_write_items

    def transact_backing_up_once(self, transact_items):
        backups = {}

        def deepcopy(obj, memo=None):
            if not isinstance(obj, models.Table):
                return copy.deepcopy(obj, memo)
            if id(obj) not in backups:
                backups[id(obj)] = copy.deepcopy(obj)
            return backups[id(obj)]

        models.copy = types.SimpleNamespace(deepcopy=deepcopy)  # safe: DynamoDB requests are serialised
        try:
            return transact(self, transact_items)
        finally:
            models.copy = copy

    models.DynamoDBBackend.transact_write_items = transact_backing_up_once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    lean_dynamodb()
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
