"""An HTTP proxy in front of the moto server that makes chosen S3 GETs fail the way S3 does, or stops a caller.

botocore talks to the proxy as to S3: an injected fault is a real HTTP answer
(an S3 error document with its status, or a body cut off mid-transfer), so the
client's own retries, error parsing and streaming errors are what the job sees.
``on_request`` sees every request before it is forwarded (any service's): the
caller waits for its answer meanwhile, so a test can look at the world at that
exact moment of a run, or answer with a fault of its own choosing.
Everything else is forwarded unchanged. Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Fault:
    """What to do to the next ``times`` GETs of ``key``: answer ``status``/``code``, or cut the body short."""

    key: str
    status: int = 0
    code: str = ""
    message: str = "injected fault"
    times: int = 1_000_000
    cut_after: int | None = None


@dataclass(frozen=True)
class Request:
    """One request as the proxy received it; ``headers`` with lower-case names."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str:
        """The object key of a path-style S3 request (``/<bucket>/<key>``), unquoted."""
        return unquote(self.path.split("?")[0].split("/", 2)[-1])

    @property
    def access_key_id(self) -> str:
        """Who signed it (SigV4 ``Credential=<key id>/...``)."""
        return self.headers.get("authorization", "").partition("Credential=")[2].split("/")[0]


class FaultyS3:
    """``with FaultyS3(moto_endpoint) as proxy:`` point clients at ``proxy.endpoint``; ``proxy.faults`` and ``gets``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.faults: list[Fault] = []
        self.gets: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every GET seen
        # Called with each request before it is forwarded; a Fault it returns is the answer instead.
        self.on_request: Callable[[Request], Fault | None] | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultyS3:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if method == "GET" and path.split("?")[0].endswith("/" + fault.key) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None


def _handler(proxy: FaultyS3) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return data
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            body = self._body()
            if self.command == "GET":
                proxy.gets.append((self.path, dict(self.headers)))
            fault = proxy.take_fault(self.command, self.path)
            if proxy.on_request is not None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                fault = proxy.on_request(Request(self.command, self.path, headers, body)) or fault
            if fault is not None and fault.status:
                error = f"<Error><Code>{fault.code}</Code><Message>{fault.message}</Message></Error>".encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding")}
            headers["Content-Length"] = str(len(body))
            upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    if fault is not None and fault.cut_after is not None:
                        self.wfile.write(data[: fault.cut_after])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(data)
            finally:
                upstream.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
