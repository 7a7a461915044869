"""A reverse proxy in front of a real CalDAV server that counts what reaches it.

Every request is forwarded unchanged (method, path, headers, body) to the server and its
answer sent back, so the count is what the server saw: auth challenges included. ``answer``
maps a path prefix to a status the proxy gives instead of forwarding (a calendar that moved:
301 with a Location, or 410), for the answers a test server does not give by itself.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

METHODS = "GET HEAD PUT DELETE OPTIONS PROPFIND PROPPATCH REPORT MKCALENDAR MKCOL MOVE COPY POST"
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class Proxy:
    url: str
    upstream: str
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    answer: dict[str, tuple[int, str]] = field(default_factory=dict)  # prefix → (status, location)

    def reset(self) -> None:
        self.seen.clear()


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    up = urlsplit(proxy.upstream)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def _forward(self) -> None:
            proxy.seen.append((self.command, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            for prefix, (status, location) in proxy.answer.items():
                if self.path.startswith(prefix):
                    self.send_response(status)
                    if location:
                        self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for k, v in response.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                conn.close()

    for method in METHODS.split():
        setattr(Forward, f"do_{method}", Forward._forward)
    return Forward


@contextmanager
def counting_proxy(upstream: str) -> Iterator[Proxy]:
    """A proxy on a free loopback port in front of ``upstream`` (``http://host:port/``)."""
    proxy = Proxy("", upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
