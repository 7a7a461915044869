"""The daemon's side of the personal pages, in process over a real state store: what it
refuses before anything reaches the network or the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.daemon.people import People
from bridge.daemon.portal import DaemonPortal
from bridge.model.people import NewTarget
from bridge.model.tokens import TokenSet
from bridge.state import open_state
from bridge.state.vault import Vault, generate_key
from bridge.web.portal import Refused
from tests.helpers.portal import write_config
from tests.helpers.servers import free_port
from tests.helpers.sim import Sim


async def _nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:8766/", "127.0.0.1"),
        ("https://localhost/dav/", "127.0.0.1"),
        ("https://10.1.2.3/", "10.1.2.3"),
        ("https://169.254.169.254/latest/", "169.254.169.254"),
        ("https://[::1]/", "::1"),
    ],
)
async def test_calendars_on_the_servers_own_network_are_refused(
    sim: Sim, tmp_path: Path, url: str, said: str
) -> None:
    key = generate_key()
    config = load_config(write_config(tmp_path, sim, free_port(), key))
    state = open_state(config.state.database_url(), Vault([key], source="test"))
    try:
        people = People(state, config)
        person = people.connect(
            TokenSet(
                access_token="a", refresh_token="r", expires_at=None, user_id=7, user_name="Ann"
            )
        )
        portal = DaemonPortal(
            people, state, refresh=_nothing, target_health=lambda _: None, local_calendars=False
        )
        target = NewTarget(url, "ann", "pw", "Canvas", ("conferences",), None, True)
        with pytest.raises(Refused, match="on this server's own network") as refused:
            await portal.add_calendar(person.id, target)
        assert said in refused.value.message and "pw" not in refused.value.message
        assert state.people.get(person.id).targets == ()
        # plain http to another host is refused by the [[caldav]] checks, before any lookup
        with pytest.raises(Refused, match="plain http"):
            await portal.add_calendar(
                person.id,
                NewTarget(
                    "http://caldav.example.org/",
                    "ann",
                    "pw",
                    "Canvas",
                    ("conferences",),
                    None,
                    True,
                ),
            )
    finally:
        state.close()
