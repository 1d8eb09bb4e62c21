"""A fault-injecting HTTP proxy in front of the loopback S3 server: tests of retries and of crashes under faults."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that forwards to ``upstream`` but fails the requests ``plan`` picks.

    ``plan(n, method)`` sees the 1-based request number and returns None (forward), "503" (answer
    ServiceUnavailable), "drop" (close the connection without an answer) or "truncate" (forward, then send only
    half of the response body and close).
    """

    def __init__(self, upstream: str, plan: Callable[[int, str], str | None]) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = plan
        self.requests = self.faults = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next(self, method: str) -> str | None:
        with self._lock:
            self.requests += 1
            fault = self.plan(self.requests, method)
            self.faults += fault is not None
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        hop = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length", "server", "date"}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real S3 endpoint

            def log_message(self, *args: object) -> None:
                pass

            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._next(self.command)
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault == "503":
                    error = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(b"" if self.command == "HEAD" else error)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in hop:
                        self.send_header(name, value)
                length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if fault == "truncate" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                elif self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = relay

        return Handler
