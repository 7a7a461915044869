"""The personal pages of institution mode (PAGES.md): sign-in with Canvas, ``/me`` and its forms.

Served on the feed listener beside ``/feeds/…`` when the config has an ``[oauth]`` section.
Every page is rendered from the package's Jinja2 templates (autoescaped), styled by one inline
stylesheet allowed by its hash (no JavaScript at all), with the subscribe page's security
headers. Every POST must carry the session's CSRF token (else 403, nothing changed); every id
in a form is looked up among the signed-in person's own (else 404).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any
from zoneinfo import available_timezones

from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bridge import errors
from bridge.model.people import NewTarget
from bridge.web.links import feed_urls
from bridge.web.portal.guard import (
    PortalOptions,
    RateLimit,
    csrf_ok,
    csrf_token,
    new_state,
    session_middleware,
    sign_in,
    signed_in,
    take_state,
)
from bridge.web.portal.service import NotYours, PersonPage, PortalService, Refused

log = logging.getLogger("bridge.web.portal")

INCLUDES = (
    ("conferences", "Web conferences"),
    ("reservations", "My Scheduler bookings"),
    ("open_slots", "Open slots I can book"),
    ("managed_slots", "Slots of the appointment groups I manage, with who booked them"),
)
_INCLUDE_VALUES = {value for value, _ in INCLUDES}
_LABELS = dict(INCLUDES)
MAX_FORM = 64 * 1024  # bytes of a form; the largest (add a calendar) is well under 1 KiB

STYLE = files("bridge.web.portal").joinpath("templates/portal.css").read_text("utf-8")
PORTAL_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    + "'; img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": PORTAL_CSP,
    "cache-control": "no-store",
    "x-robots-tag": "noindex, nofollow",
}

_env = Environment(
    loader=PackageLoader("bridge.web.portal", "templates"),
    autoescape=True,
    trim_blocks=False,
)


@cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/")))


@cache
def _zone_options() -> str:
    """The ``<option>`` of every zone, built once (500-odd of them: rendering them through the
    template for every feed took most of a page's time)."""
    return "".join(f'<option value="{escape(z)}">{escape(z)}</option>' for z in _zones())


def _zone_select(selected: str | None) -> Markup:
    options = _zone_options()
    if selected:
        mark = f'<option value="{escape(selected)}">'
        options = options.replace(mark, mark[:-1] + " selected>", 1)
    return Markup(options)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _describe(include: tuple[str, ...]) -> str:
    return ", ".join(_LABELS.get(i, i).lower() for i in include) or "nothing"


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(style=STYLE, **context)
    return HTMLResponse(html, status, headers=_HEADERS)


def message(
    status: int,
    heading: str,
    text: str,
    *,
    connect: str | None = None,
    back: str | None = None,
    back_label: str = "Back",
    details: tuple[str, ...] = (),
) -> HTMLResponse:
    return render(
        "message.html",
        status,
        heading=heading,
        message=text,
        connect=connect,
        back=back,
        back_label=back_label,
        details=details,
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def portal_routes(service: PortalService, options: PortalOptions) -> list[Route]:
    """The routes of PAGES.md, each behind the session middleware (and only these)."""
    limiter = RateLimit(options.sign_in_burst, options.sign_in_per_minute)
    lifetime = options.session_lifetime

    def too_many(request: Request) -> Response | None:
        if limiter.allow(_client(request)):
            return None
        response = message(
            429,
            "Too many sign-in attempts",
            "This address has started too many sign-ins in a short time. Wait a minute and "
            "try again.",
        )
        response.headers["retry-after"] = "60"
        return response

    async def index(request: Request) -> Response:
        return render("index.html", signed_in=signed_in(request.session, lifetime) is not None)

    async def connect(request: Request) -> Response:
        refused = too_many(request)
        if refused is not None:
            return refused
        return RedirectResponse(service.authorize_url(new_state(request.session)), 302)

    async def callback(request: Request) -> Response:
        refused = too_many(request)
        if refused is not None:
            return refused
        params = request.query_params
        if not take_state(request.session, params.get("state", "")):
            return message(
                400,
                "This sign-in cannot be finished",
                "The answer from Canvas does not belong to a sign-in started in this browser "
                "(it was used already, or started elsewhere). Nothing was stored; start again.",
                connect="Connect with Canvas",
            )
        error = params.get("error")
        if error == "access_denied":
            return message(
                403,
                "You cancelled",
                "You did not authorize calbridge at Canvas, so nothing was connected or stored.",
                connect="Connect with Canvas",
            )
        code = params.get("code")
        if error or not code:
            return message(
                400,
                "Canvas refused the sign-in",
                f"Canvas answered {error or 'without a code'}. Nothing was stored.",
                connect="Try again",
            )
        try:
            person = await service.sign_in(code)
        except errors.CanvasError as exc:
            log.warning("sign-in failed: %s", exc)
            return message(
                502,
                "The sign-in could not be finished",
                "Canvas did not accept calbridge's request to finish the sign-in, so nothing "
                f"was stored: {exc}",
                connect="Try again",
            )
        sign_in(request.session, person.id, person.canvas_user_id)
        return RedirectResponse("/me", 303)

    async def who(request: Request) -> PersonPage | None:
        found = signed_in(request.session, lifetime)
        if found is None:
            return None
        page = await service.page(found[0])
        if page is None or page.person.canvas_user_id != found[1]:
            request.session.clear()
            return None
        return page

    def show(
        request: Request,
        page: PersonPage,
        status: int = 200,
        *,
        error: str | None = None,
        calendar_error: str | None = None,
        form: dict[str, Any] | None = None,
    ) -> Response:
        feeds = [
            {
                "feed": f,
                "urls": feed_urls(options.public_url, f.feed_id, f.secret, f.name or "Canvas"),
            }
            for f in page.person.feeds
        ]
        return render(
            "me.html",
            status,
            page=page,
            person=page.person,
            feeds=feeds,
            csrf=csrf_token(request.session),
            zone_select=_zone_select,
            includes=INCLUDES,
            when=_when,
            describe=_describe,
            error=error,
            calendar_error=calendar_error,
            form=form
            or {
                "url": "",
                "username": "",
                "calendar": "",
                "include": ("conferences", "reservations"),
                "writeback": True,
            },
        )

    async def me(request: Request) -> Response:
        page = await who(request)
        if page is None:
            return RedirectResponse("/", 303)
        return show(request, page)

    async def posted(request: Request) -> tuple[PersonPage | None, Any, Response | None]:
        """The form, the person, or the answer when the POST may not go on (403, 303)."""
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return (
                None,
                form,
                message(
                    403,
                    "This form has expired",
                    "The form was not sent from your current page (its security token is "
                    "missing or wrong), so nothing was changed. Open your page again.",
                    back="/me",
                ),
            )
        page = await who(request)
        if page is None:
            return None, form, RedirectResponse("/", 303)
        return page, form, None

    def not_found() -> Response:
        return message(
            404, "Not found", "There is no such feed or calendar on your page.", back="/me"
        )

    def number(request: Request, name: str) -> int | None:
        text = request.path_params[name]
        return int(text) if text.isdigit() and len(text) < 12 else None

    def includes(form: Any) -> tuple[str, ...]:
        chosen = tuple(v for v in form.getlist("include") if isinstance(v, str))
        unknown = [v for v in chosen if v not in _INCLUDE_VALUES]
        if unknown:
            raise Refused(
                f"unknown choice {unknown[0]!r} (known: {', '.join(sorted(_INCLUDE_VALUES))})"
            )
        if not chosen:
            raise Refused("choose at least one kind of event to show")
        return tuple(v for v, _ in INCLUDES if v in chosen)

    async def feed_settings(request: Request) -> Response:
        page, form, stop = await posted(request)
        if stop is not None or page is None:
            return stop or RedirectResponse("/", 303)
        feed_id = number(request, "feed")
        if feed_id is None:
            return not_found()
        zone = form.get("timezone") or ""
        try:
            if not isinstance(zone, str) or (zone and zone not in available_timezones()):
                raise Refused(f"unknown time zone {str(zone)[:60]!r}")
            await service.update_feed(page.person.id, feed_id, includes(form), zone or None)
        except NotYours:
            return not_found()
        except Refused as exc:
            return show(request, page, 400, error=f"Feed not saved: {exc.message}")
        return RedirectResponse("/me", 303)

    async def on_one_of_mine(
        request: Request, name: str, act: Callable[[int, int], Awaitable[None]]
    ) -> Response:
        """A form that acts on one of the person's feeds or calendars (by the id in the
        path): 404 when the id is not theirs."""
        page, _, stop = await posted(request)
        if stop is not None or page is None:
            return stop or RedirectResponse("/", 303)
        thing_id = number(request, name)
        try:
            if thing_id is None:
                raise NotYours(f"no such {name}")
            await act(page.person.id, thing_id)
        except NotYours:
            return not_found()
        return RedirectResponse("/me", 303)

    async def rotate(request: Request) -> Response:
        return await on_one_of_mine(request, "feed", service.rotate_feed)

    async def add_calendar(request: Request) -> Response:
        page, form, stop = await posted(request)
        if stop is not None or page is None:
            return stop or RedirectResponse("/", 303)

        def text(name: str) -> str:
            value = form.get(name)
            return value.strip() if isinstance(value, str) else ""

        url, username, calendar = text("url"), text("username"), text("calendar")
        writeback = bool(form.get("writeback"))
        kept = {
            "url": url,
            "username": username,
            "calendar": calendar,
            "include": tuple(v for v in form.getlist("include") if isinstance(v, str)),
            "writeback": writeback,
        }
        password = form.get("password")
        try:
            if not url:
                raise Refused("the server address is missing")
            if not username:
                raise Refused("the user name is missing")
            if not isinstance(password, str) or not password:
                raise Refused("the password is missing")
            target = NewTarget(
                url=url,
                username=username,
                password=password,
                calendar=calendar or "Canvas",
                include=includes(form),
                timezone=None,
                writeback=writeback,
            )
            await service.add_calendar(page.person.id, target)
        except Refused as exc:
            return show(
                request, page, 400, calendar_error=f"Calendar not added: {exc.message}", form=kept
            )
        return RedirectResponse("/me", 303)

    async def remove_calendar(request: Request) -> Response:
        return await on_one_of_mine(request, "calendar", service.remove_calendar)

    async def disconnect(request: Request) -> Response:
        page, form, stop = await posted(request)
        if stop is not None or page is None:
            return stop or RedirectResponse("/", 303)
        try:
            done = await service.disconnect(page.person.id, bool(form.get("remove_events")))
        except errors.CanvasError as exc:
            log.warning("person %s: disconnect failed: %s", page.person.account_id, exc)
            return message(
                502,
                "Not disconnected",
                "calbridge could not revoke its access at Canvas, so nothing was deleted. "
                f"Try again in a few minutes. ({exc})",
                back="/me",
            )
        request.session.clear()
        details = [
            f"{done.feeds} feed{'s' * (done.feeds != 1)} and {done.calendars} "
            f"calendar{'s' * (done.calendars != 1)} deleted; calbridge's access at Canvas revoked."
        ]
        if done.events_removed:
            details.append(f"{done.events_removed} events removed from your calendars.")
        details += [f"Not removed: {p}" for p in done.problems]
        return message(
            200,
            "Disconnected",
            "calbridge no longer has access to your Canvas account and keeps nothing of yours.",
            back="/",
            back_label="calbridge home",
            details=tuple(details),
        )

    async def sign_out(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return message(
                403,
                "This form has expired",
                "The form was not sent from your current page, so nothing was changed.",
                back="/me",
            )
        request.session.clear()
        return RedirectResponse("/", 303)

    session = [session_middleware(options)]

    def get(path: str, endpoint: Any) -> Route:
        return Route(path, endpoint, methods=["GET"], middleware=session)

    def post(path: str, endpoint: Any) -> Route:
        return Route(path, endpoint, methods=["POST"], middleware=session, max_body_size=MAX_FORM)

    return [
        get("/", index),
        get("/connect", connect),
        get("/oauth/callback", callback),
        get("/me", me),
        post("/me/feeds/{feed}", feed_settings),
        post("/me/feeds/{feed}/rotate", rotate),
        post("/me/calendars", add_calendar),
        post("/me/calendars/{calendar}/remove", remove_calendar),
        post("/me/disconnect", disconnect),
        post("/signout", sign_out),
    ]
