"""Golden files: Canvas JSON in, ICS out, for every case in corpus/cases.json.

Regenerate after an intended change with ``CALBRIDGE_REGEN_GOLDEN=1 pytest tests/mapping`` and
review the diff; without the flag a mismatch fails.
"""

from __future__ import annotations

import os

import pytest

from bridge.mapping import render_feed
from bridge.mapping.feed import SkipReason
from tests.helpers.mapping import CASES, CORPUS, build
from tests.helpers.options import feed_options
from tests.helpers.validators import assert_valid


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    snapshot, options, now = build(CASES[name])
    feed = render_feed(snapshot, options, {}, now)  # type: ignore[arg-type]
    expected = CORPUS / f"{name}.ics"
    if os.environ.get("CALBRIDGE_REGEN_GOLDEN"):
        expected.write_bytes(feed.ics)
    assert feed.ics == expected.read_bytes(), f"{name}: output differs from {expected.name}"
    assert assert_valid(feed.ics.decode()) == len(feed.events)


def test_zero_length_slot_from_the_api_document_is_valid() -> None:
    snapshot, options, now = build(CASES["api-document-examples"])
    feed = render_feed(snapshot, options, {}, now)  # type: ignore[arg-type]
    text = feed.ics.decode()
    block = text[text.index("UID:canvas-reservation-987@") :]
    block = block[: block.index("END:VEVENT")]
    assert "DTSTART:20120720T210000Z" in block and "DTEND" not in block
    conf = text[text.index("UID:canvas-conference-170@") :]
    assert (
        "LOCATION" not in conf[: conf.index("END:VEVENT")]
    )  # no url at all: no join link invented


def test_hostile_text_is_neutralised() -> None:
    snapshot, options, now = build(CASES["hostile-text"])
    feed = render_feed(snapshot, options, {}, now)  # type: ignore[arg-type]
    conf = next(e for e in feed.events if e.kind == "conference")
    assert "alert" not in conf.description and "\x07" not in conf.description
    assert (
        "• one & two" in conf.description and "(https://example.edu/x?a=1&b=2)" in conf.description
    )
    assert [(s.reason, s.detail) for s in feed.skipped] == [
        (SkipReason.NO_TIME, "no scheduled or actual start")
    ]


def test_window_and_size_cuts_are_reported() -> None:
    snapshot, options, now = build(CASES["window-cut"])
    window = render_feed(snapshot, options, {}, now)  # type: ignore[arg-type]
    assert any(s.reason is SkipReason.OUTSIDE_WINDOW for s in window.skipped)
    full = render_feed(snapshot, feed_options(include=options.include), {}, now)  # type: ignore[arg-type]
    snapshot, options, now = build(CASES["size-cut"])
    cut = render_feed(snapshot, options, {}, now)  # type: ignore[arg-type]
    assert len(cut.ics) <= 4000
    dropped = [s for s in cut.skipped if s.reason is SkipReason.FEED_TOO_LARGE]
    assert dropped and len(cut.events) + len(dropped) == len([e for e in full.events])
    latest_kept = max(e.start for e in cut.events)  # type: ignore[type-var]
    dropped_events = [e for e in full.events if e.uid in {s.ref for s in dropped}]
    assert all(e.start >= latest_kept for e in dropped_events)  # type: ignore[operator]
