"""The CalDAV adapter's one error boundary (bridge/dav/boundary.py), against real servers.

A refused login reads the same whichever path met it (the probe that picks Digest or Basic,
discovery through the caldav library, a PUT of the hot path); a 412 names the ETag we expected
and, when the server's answer said, the one it has.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridge.dav.discovery import ChallengeAuth, choose_auth, discover
from bridge.dav.webdav import Dav
from bridge.errors import CalDAVAuthError, CalDAVConflict
from tests.helpers.dav import desired, event, target_settings
from tests.helpers.servers import Server, sabredav

REFUSED = "caldav phone: the server refused the username or password (HTTP 401)"


async def test_a_refused_login_reads_the_same_at_the_probe_at_discovery_and_at_a_put(
    tmp_path: Path,
) -> None:
    # SabreDAV is the server of the three that the tests run with authentication (Digest).
    with sabredav(tmp_path) as server:
        good = target_settings(server)
        collection, _ = await discover(good)
        bad = dataclasses.replace(good, password="wrong-password-xyz")
        with pytest.raises(CalDAVAuthError) as probe:
            await choose_auth(bad)
        with pytest.raises(CalDAVAuthError) as discovery:
            await discover(bad, create=False)
        dav = Dav(
            collection,
            ChallengeAuth(bad.username, bad.password),
            target=bad.id,
            timeout=10,
            max_parallel=1,
        )
        try:
            with pytest.raises(CalDAVAuthError) as put:
                await dav.put(dav.href_path("refused.ics"), "BEGIN:VCALENDAR", create=True)
        finally:
            await dav.aclose()
    for caught in (probe, discovery, put):
        assert type(caught.value) is CalDAVAuthError
        assert str(caught.value) == REFUSED
        assert (caught.value.target, caught.value.status) == ("phone", 401)
        assert "wrong-password-xyz" not in repr(caught.value.args)


async def test_a_412_names_the_etag_we_expected_and_the_servers(server: Server) -> None:
    settings = target_settings(server)
    collection, _ = await discover(settings)
    dav = Dav(collection, await choose_auth(settings), target="phone", timeout=10, max_parallel=1)
    try:
        first, second = desired(event(1)).popitem()[1], desired(event(1, "Moved")).popitem()[1]
        href = dav.href_path("conflict-1.ics")
        await dav.put(href, first.ics, create=True)
        ours = (await dav.list_all()).etags[href]
        await dav.put(href, second.ics, etag=ours)  # someone else's edit, on their phone
        theirs = (await dav.list_all()).etags[href]
        assert ours and theirs and ours != theirs

        with pytest.raises(CalDAVConflict) as update:
            await dav.put(href, first.ics, etag=ours)
        with pytest.raises(CalDAVConflict) as create:
            await dav.put(href, first.ics, create=True)
        with pytest.raises(CalDAVConflict) as delete:
            await dav.delete(href, ours)
    finally:
        await dav.aclose()

    assert update.value.status == create.value.status == delete.value.status == 412
    assert (update.value.expected_etag, delete.value.expected_etag) == (ours, ours)
    assert create.value.expected_etag is None
    for caught, method in ((update, "PUT"), (create, "PUT"), (delete, "DELETE")):
        # the server's ETag when its 412 carried one; none of the three servers sends it
        assert caught.value.current_etag is None
        assert str(caught.value).startswith(f"caldav phone: {method} {href}: changed on the server")
    assert f"expected ETag {ours}, the server's ETag unknown" in str(update.value)
    assert "expected no object there" in str(create.value)
