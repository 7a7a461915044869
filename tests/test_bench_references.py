"""The benchmarks refuse to divide by a reference that did not do the same work: an nginx that
answers 403 (as the old bench/serve.sh's did), other bytes, a 200 where a 304 belongs; a CalDAV
peer that exits 0 having written fewer events."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.push import BenchError as PushError
from bench.push import same_events
from bench.serve import BenchError, Target, check
from bridge.dav.remote import href_for
from bridge.simulator.server import serve_in_thread
from tests.helpers.dav import desired, event
from tests.helpers.servers import radicale

BODY = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"


def reference(status: int, body: bytes, conditional: int) -> Starlette:
    async def feed(request: Request) -> Response:
        if request.headers.get("if-none-match"):
            return Response(status_code=conditional)
        return Response(body, status)

    return Starlette(routes=[Route("/feed.ics", feed)])


@pytest.mark.parametrize(
    ("status", "body", "conditional", "error"),
    [
        (403, b"Forbidden", 304, "answered 403"),
        (200, BODY + b"X", 304, "differ from the feed"),
        (200, BODY, 200, "expected 304"),
    ],
)
def test_serve_stops_on_a_reference_that_did_other_work(
    status: int, body: bytes, conditional: int, error: str
) -> None:
    with serve_in_thread(reference(status, body, conditional)) as server:
        target = Target("nginx", f"{server.url}/feed.ics", '"x"', 0)
        with pytest.raises(BenchError, match=error):
            check(target, BODY)


def test_serve_accepts_a_reference_that_did_the_same_work() -> None:
    with serve_in_thread(reference(200, BODY, 304)) as server:
        check(Target("nginx", f"{server.url}/feed.ics", '"x"', 0), BODY)


def test_push_stops_when_a_peer_wrote_fewer_events(tmp_path: Path) -> None:
    wanted = desired(event(1), event(2), event(3))
    with radicale(tmp_path / "radicale") as server, httpx.Client(auth=("user", "pw")) as http:
        collection = f"{server.home}peer/"
        assert http.request("MKCALENDAR", collection).status_code == 201
        for uid in list(wanted)[:2]:  # the peer "succeeded" but wrote two of three
            http.put(collection + href_for(uid), content=wanted[uid].ics).raise_for_status()
        with pytest.raises(PushError, match="left 2 events"):
            same_events("vdirsyncer", collection, set(wanted))
        last = list(wanted)[2]
        http.put(collection + href_for(last), content=wanted[last].ics).raise_for_status()
        same_events("vdirsyncer", collection, set(wanted))
