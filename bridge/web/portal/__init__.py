"""Institution mode's personal pages: sign-in with Canvas and each person's ``/me``."""

from bridge.web.portal.guard import PortalOptions
from bridge.web.portal.routes import portal_routes
from bridge.web.portal.service import (
    CalendarView,
    Disconnected,
    NotYours,
    PersonPage,
    PortalError,
    PortalService,
    Refused,
    WritebackView,
)

__all__ = [
    "CalendarView",
    "Disconnected",
    "NotYours",
    "PersonPage",
    "PortalError",
    "PortalOptions",
    "PortalService",
    "Refused",
    "WritebackView",
    "portal_routes",
]
