"""Canvas web conferences as calendar events.

Time, in order of preference: the scheduled ``start_at``/``end_at``; else ``started_at`` …
``ended_at``; else ``started_at`` + ``duration``. Two documented rules cover the rest:

* **long-running** conferences (no duration, not ended) are shown for
  :data:`LONG_RUNNING_LENGTH` from their start, marked "long-running" in the description, so
  they are visible without blocking a whole day or week;
* conferences with **no time at all** (never scheduled, never started) are not rendered; the
  caller gets them back as skipped with the reason.

The way to join — ``join_url`` when Canvas sends it, else ``url`` (the conference page; the API
leaves ``join_url`` null) — goes in LOCATION and the description (what most clients show) and
as URL and an RFC 7986 CONFERENCE property. A conference that is live now (Canvas's rule:
started within the last 24 hours and not ended) gets a "● LIVE" prefix.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.mapping.identity import uid_for
from bridge.mapping.text import checked_uri, html_to_text
from bridge.model.canvas import Conference
from bridge.model.event import CalEvent

LONG_RUNNING_LENGTH = timedelta(hours=1)
DEFAULT_LENGTH = timedelta(hours=1)
LIVE_PREFIX = "● LIVE: "


class NoTime(ValueError):
    """The conference has no scheduled or actual time."""


def conference_times(conf: Conference) -> tuple[datetime, datetime, bool]:
    """``(start, end, long_running)``, or :class:`NoTime`."""
    if conf.start_at is not None:
        start = conf.start_at
        end = conf.end_at or conf.ended_at
    elif conf.started_at is not None:
        start = conf.started_at
        end = conf.ended_at
    else:
        raise NoTime("no scheduled or actual start")
    if end is None and conf.duration:
        end = start + timedelta(minutes=conf.duration)
    long_running = end is None and (conf.long_running or conf.duration is None)
    if end is None:
        end = start + (LONG_RUNNING_LENGTH if long_running else DEFAULT_LENGTH)
    return start, max(end, start), long_running


def is_live(conf: Conference, now: datetime) -> bool:
    """Canvas's ``WebConference.live`` scope (canvas-behaviour §1.3)."""
    started = conf.started_at
    if started is None or not now - timedelta(days=1) <= started <= now:
        return False
    return conf.ended_at is None or conf.ended_at > now


def conference_event(conf: Conference, host: str, now: datetime) -> CalEvent:
    start, end, long_running = conference_times(conf)
    uid = uid_for("conference", conf.id, host)
    # A link that is not plain http(s) (CRLF, javascript:, …) is dropped, here and in the writer.
    link = checked_uri(conf.join_url, uid, "join_url") or checked_uri(conf.url, uid, "url")
    live = is_live(conf, now)
    lines = []
    if live:
        lines.append("This conference is live now.")
    if long_running:
        lines.append("Long-running conference: it has no set end.")
    about = html_to_text(conf.description)
    if about:
        lines.append(about)
    if link:
        lines.append(f"Join: {link}")
    ended = conf.ended_at is not None and conf.ended_at <= now
    if ended and conf.recordings:
        recordings = ["Recordings:"]
        for rec in conf.recordings:
            minutes = f" ({rec.duration_minutes} min)" if rec.duration_minutes else ""
            watch = checked_uri(rec.link, uid, "recording link") or "no link"
            recordings.append(f"• {rec.title or 'Recording'}{minutes}: {watch}")
        lines.append("\n".join(recordings))
    elif ended:
        lines.append("This conference has ended.")
    kind = f"{conf.conference_type} conference" if conf.conference_type else "Conference"
    return CalEvent(
        uid=uid,
        kind="conference",
        summary=(LIVE_PREFIX if live else "") + (conf.title or kind),
        start=start,
        end=end,
        description="\n\n".join(lines),
        location=link or "",
        url=link,
        conference_uri=link,
        categories=("Canvas", "Conference"),
        canvas_id=conf.id,
        context_code=conf.context_code,
    )
