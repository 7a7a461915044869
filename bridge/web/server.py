"""Running the ASGI app with uvicorn inside the daemon's own asyncio loop.

uvicorn normally takes over SIGINT/SIGTERM; here the daemon owns signals (it must stop the
scheduler and tell systemd), so the server's signal capture is switched off and it is stopped
explicitly. The socket is bound before serving, so ``listen = "127.0.0.1:0"`` works and the
real port is known.

Hostile clients: uvicorn closes idle keep-alive connections but not a connection that never
sends (or trickles) its request headers, and it has no cap on open connections. So each
connection here must deliver complete headers within ``header_timeout``, and past
``max_connections`` (never more than the process's file descriptors allow) the connection
idle the longest is closed to make room: a flood of idle sockets cannot keep feeds from
answering, and ``accept()`` never runs out of descriptors because of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Generator
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.errors import SetupError

log = logging.getLogger("bridge.web")

# Descriptors kept free for everything else the daemon opens (database, Canvas, CalDAV, logs).
RESERVED_FDS = 64
KERNEL_BACKLOG = 1024


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as systemd services may); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def accept_burst(max_connections: int) -> int:
    """How many connections asyncio may accept in one go (its ``backlog``), before any of them
    is handed to the protocol and can be counted against the cap."""
    return max(4, min(64, max_connections // 16))


def connection_cap(wanted: int, share: float = 1.0) -> int:
    """``wanted``, but never more than ``share`` of the descriptors left after the reserve,
    minus room for the connections accepted (a burst per loop iteration, for the few loop
    iterations it takes to close the ones the cap evicted) before the cap can act."""
    soft = raise_fd_limit()
    if soft == resource.RLIM_INFINITY:
        return wanted
    usable = int((soft - RESERVED_FDS) * share)
    return max(8, min(wanted, usable - 6 * accept_burst(usable)))


class _Bounded(asyncio.Protocol):
    """A request-header deadline and a connection cap, for either of uvicorn's HTTP/1.1
    protocols (both keep ``cycle``, ``connections``, ``transport`` and ``loop``)."""

    header_timeout: float  # both set by bounded_protocol, from [http]
    max_connections: int
    cycle: Any
    connections: set[Any]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self.last_active = 0.0

    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self.last_active = self.loop.time()
        self._deadline = self.loop.call_later(self.header_timeout, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline = None
        if not self._in_flight() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()
        if len(self.connections) <= self.max_connections:
            return
        # Closed transports stay in the set until the next loop iteration: skip them.
        open_ = [c for c in self.connections if not c.transport.is_closing()]
        if len(open_) <= self.max_connections:
            return
        idle = [
            c for c in open_ if c is not self and isinstance(c, _Bounded) and not c._in_flight()
        ]
        victim = min(idle, key=lambda c: c.last_active) if idle else self
        victim.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()


class BoundedH11(_Bounded, H11Protocol):
    """uvicorn's h11 protocol (pure Python) with the deadline and the cap."""


class BoundedHttpTools(_Bounded, HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, C) with the deadline and the cap."""


def bounded_protocol(
    header_timeout: float, max_connections: int, parser: str = "httptools"
) -> type[_Bounded]:
    base = BoundedHttpTools if parser == "httptools" else BoundedH11
    return type(
        base.__name__,
        (base,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class WebServer:
    """A uvicorn server as an asyncio task: ``await start()``, ``await stop()``."""

    def __init__(
        self,
        app: ASGIApp,
        listen: str,
        *,
        key: str = "http.listen",
        max_connections: int,
        header_timeout: float,
        keepalive_timeout: float,
        parser: str = "httptools",  # measured: bench/serve.py --parser
    ) -> None:
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off only on sockets
        # whose proto says TCP (accepted ones inherit it); with it on, an answer written as
        # headers then body waited 40 ms for the client's delayed ACK on a kept-alive connection.
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise SetupError(f"cannot listen on {listen}: {exc.strerror}", key) from None
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self.max_connections = max_connections
        self.protocol = bounded_protocol(header_timeout, max_connections, parser)
        config = uvicorn.Config(
            app,
            access_log=False,
            log_config=None,
            lifespan="off",
            server_header=False,
            http=self.protocol,
            timeout_keep_alive=max(1, round(keepalive_timeout)),
            backlog=accept_burst(max_connections),
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        # asyncio took the small accept burst as the kernel's queue length too; a longer queue
        # keeps connection attempts waiting there instead of being dropped (and retried 1 s later).
        self._sock.listen(KERNEL_BACKLOG)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()
