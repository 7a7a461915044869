"""What a request to the simulator costs: benches must measure calbridge, not the simulator."""

from __future__ import annotations

import socket
import time

from bridge.simulator.app import create_app
from bridge.simulator.sample import bulk_world
from bridge.simulator.server import serve_in_thread


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while True:
        data += sock.recv(65536)
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return data


def test_a_kept_alive_connection_does_not_wait_for_delayed_acks() -> None:
    """Each answer goes out as headers then body; with Nagle's algorithm on, the body waited
    for the client's delayed ACK and every request after a connection's first took 40-44 ms."""
    world, tokens = bulk_world(users=1, groups_per_user=1, conferences_per_user=1)
    request = (
        f"GET /api/v1/users/self HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer {tokens[0]}\r\n\r\n"
    ).encode()
    with (
        serve_in_thread(create_app(world)) as server,
        socket.create_connection((server.host, server.port)) as sock,
    ):
        times = []
        for _ in range(6):
            start = time.perf_counter()
            sock.sendall(request)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            times.append(time.perf_counter() - start)
    assert min(times[1:]) < 0.02, times
