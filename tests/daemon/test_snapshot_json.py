"""The snapshot saved after a poll is serialised once: its JSON is built from the JSON the
change check hashes (without ``fetched_at``) and that one field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.daemon.cycle import whole_snapshot_json
from bridge.model.canvas import AccountSnapshot

CORPUS = sorted(
    p
    for p in (Path(__file__).parents[1] / "mapping" / "corpus").glob("*.json")
    if p.name != "cases.json"
)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
@pytest.mark.parametrize(
    "fetched_at",
    [
        datetime(2026, 3, 2, 12, tzinfo=UTC),
        datetime(2026, 3, 2, 12, 0, 1, 123456, tzinfo=UTC),
        datetime(2026, 3, 2, 12, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_the_saved_json_is_the_snapshots_json(path: Path, fetched_at: datetime) -> None:
    snapshot = AccountSnapshot.model_validate_json(path.read_text()).model_copy(
        update={"fetched_at": fetched_at}
    )
    content = snapshot.model_dump_json(exclude={"fetched_at"})
    whole = whole_snapshot_json(content, snapshot)
    assert whole == snapshot.model_dump_json()
    assert AccountSnapshot.model_validate_json(whole) == snapshot
