"""The shared Canvas connections: kept alive across requests, and a connection the server
closed while it sat idle is noticed before it is reused (the pool's own readability test).

A raw HTTP/1.1 server on loopback that counts the connections it accepted and either keeps
each one alive or closes it after one answer.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from bridge.canvas.pool import CanvasPool, PoolOptions, QuickReadable, _readable


@dataclass
class Server:
    url: str
    keep_alive: bool
    connections: int = 0
    requests: list[str] = field(default_factory=list)


async def _serve(
    server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    server.connections += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            server.requests.append(head.split(b" ", 2)[1].decode())
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            if not server.keep_alive:  # closed without saying so (no Connection: close)
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture(params=[True, False], ids=["kept-alive", "closed-after-each"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    found = Server("", keep_alive=request.param)
    listening = await asyncio.start_server(lambda r, w: _serve(found, r, w), "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    found.url = f"http://127.0.0.1:{port}"
    async with listening:
        yield found


async def test_connections_are_reused_and_a_closed_one_is_noticed(server: Server) -> None:
    pool = CanvasPool(PoolOptions(max_connections=4, timeout=5))
    http = pool.http_for(server.url)
    try:
        backend = http._transport._pool._network_backend  # type: ignore[attr-defined]
        assert isinstance(backend, QuickReadable)  # an httpcore upgrade must not drop it
        for n in range(3):
            answer = await http.get(f"{server.url}/api/v1/n{n}")
            assert answer.status_code == 200 and answer.json() == {"ok": True}
            await asyncio.sleep(0.05)  # the server's close (if any) has arrived by now
    finally:
        await pool.aclose()
    # every request reached the server once: none was sent into a closed connection
    assert server.requests == ["/api/v1/n0", "/api/v1/n1", "/api/v1/n2"]
    assert server.connections == (1 if server.keep_alive else 3)


def test_readable_means_data_or_the_peer_closed() -> None:
    """httpcore's question about an idle connection: readable = do not reuse it."""
    ours, theirs = socket.socketpair()
    try:
        assert _readable(ours) is False  # idle and open: reusable
        theirs.sendall(b"x")
        assert _readable(ours) is True  # unexpected bytes: not reusable
        ours.recv(1)
        theirs.close()
        assert _readable(ours) is True  # the peer closed it
    finally:
        ours.close()
    assert _readable(ours) is True  # closed here (no descriptor)
    assert _readable(None) is True
