"""The Canvas routes calbridge calls, as the scopes a developer key that enforces scopes needs.

Canvas names a scope after the route pattern (``url:GET|/api/v1/users/:id`` covers
``/api/v1/users/self``). This list is the one source: ``calbridge oauth scopes`` prints it, the
OAuth adapter asks for it, and a test runs a poll plus every write-back against the simulator
with a key granting exactly these scopes — a route missing here fails that test with
"Insufficient scopes", a route no longer used fails it too.
"""

from __future__ import annotations

# (method, Canvas route pattern, who calls it)
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/api/v1/users/:id", "the poll and `check`: who the token belongs to (users/self)"),
    ("GET", "/api/v1/conferences", "the poll: the person's conferences"),
    ("GET", "/api/v1/courses/:course_id/conferences", "the poll: conference_contexts courses"),
    ("GET", "/api/v1/groups/:group_id/conferences", "the poll: conference_contexts groups"),
    ("GET", "/api/v1/appointment_groups", "the poll: reservable and managed slots"),
    ("GET", "/api/v1/calendar_events/:id", "write-back: did a reservation happen?"),
    ("POST", "/api/v1/calendar_events/:id/reservations", "write-back: reserve and rebook"),
    ("DELETE", "/api/v1/calendar_events/:id", "write-back: cancel a reservation"),
)


def required_scopes() -> tuple[str, ...]:
    """Every scope calbridge needs, in Canvas's ``url:METHOD|/api/v1/...`` form."""
    return tuple(f"url:{method}|{path}" for method, path, _ in ROUTES)
