"""The golden corpus of the mapping tests: Canvas JSON cases and how to build a feed from one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from bridge.mapping import FeedOptions
from bridge.model.canvas import AccountSnapshot, to_utc
from tests.helpers.options import feed_options

CORPUS = Path(__file__).resolve().parent.parent / "mapping" / "corpus"


CASES = json.loads((CORPUS / "cases.json").read_text())


def build(case: dict[str, object]) -> tuple[AccountSnapshot, FeedOptions, object]:
    snapshot = AccountSnapshot.model_validate_json(
        (CORPUS / f"{case['snapshot']}.json").read_text()
    )
    options = feed_options(
        name=str(case.get("name", "Canvas")),
        description=case.get("description"),  # type: ignore[arg-type]
        include=frozenset(case["include"]),  # type: ignore[arg-type]
        timezone=case.get("timezone"),  # type: ignore[arg-type]
        window_past=timedelta(days=int(case.get("window_past_days", 30))),  # type: ignore[call-overload]
        window_future=timedelta(days=int(case.get("window_future_days", 366))),  # type: ignore[call-overload]
        color=case.get("color"),  # type: ignore[arg-type]
        default_alarm=timedelta(minutes=int(case["alarm_minutes"]))
        if "alarm_minutes" in case
        else None,  # type: ignore[call-overload]
        max_bytes=int(case.get("max_bytes", 900_000)),  # type: ignore[call-overload]
    )
    return snapshot, options, to_utc(case["now"])
