"""Where CalDAV answers become calbridge errors: each kind is mapped here, once.

Three paths talk to a CalDAV server — the probe that picks Digest or Basic
(:func:`~bridge.dav.discovery.choose_auth`), discovery through the ``caldav`` library, and the
per-event traffic of :class:`~bridge.dav.webdav.Dav` — and a refusal reads the same whichever
one met it. Messages name the target (the ``[[caldav]]`` id) and the href, never credentials.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.errors import CalDAVAuthError, CalDAVConflict

UNAUTHORIZED, PRECONDITION_FAILED = 401, 412
REFUSED = "the server refused the username or password"


def auth_refused(target: str, *, unsupported: Sequence[str] = ()) -> CalDAVAuthError:
    """A 401. ``unsupported``: the schemes the server asked for when calbridge speaks none of
    them (so no credentials were sent); empty when it refused the credentials we sent."""
    if unsupported:
        return CalDAVAuthError(
            f"the server asks for {', '.join(unsupported)} authentication; "
            "calbridge speaks Digest and Basic",
            target=target,
            status=UNAUTHORIZED,
        )
    return CalDAVAuthError(REFUSED, target=target, status=UNAUTHORIZED)


def conflict(
    target: str, method: str, href: str, *, expected: str | None, current: str | None
) -> CalDAVConflict:
    """A 412: the server's copy is not the one the request was conditioned on.

    ``expected`` is the ETag we sent in ``If-Match`` (None for a create, ``If-None-Match: *``);
    ``current`` the server's ETag when its answer gave one (None when unknown)."""
    ours = f"expected ETag {expected}" if expected else "expected no object there"
    theirs = f"the server has {current}" if current else "the server's ETag unknown"
    return CalDAVConflict(
        f"{method} {href}: changed on the server ({ours}, {theirs})",
        target=target,
        status=PRECONDITION_FAILED,
        expected_etag=expected,
        current_etag=current,
    )
