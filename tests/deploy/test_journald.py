"""Log lines carry their syslog priority when stderr is the journal, and only then."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.service import PRIORITY_LINE

PROGRAM = """
import logging, sys
from bridge.daemon.logs import register_secret, setup_logging
register_secret("hunter2-canvas-token")
setup_logging("debug", sys.argv[1])
log = logging.getLogger("bridge.test")
log.debug("d"); log.info("i"); log.warning("w"); log.error("e"); log.critical("c")
try:
    raise ValueError("bad hunter2-canvas-token")
except ValueError:
    log.exception("failed")
"""


def _run(fmt: str, journal: bool, redirect_to_file: bool = False) -> list[str]:
    """The program's stderr, as journald would receive it: a stream whose device and inode
    are in $JOURNAL_STREAM (or a variable inherited by a stderr that is not that stream)."""
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    if journal:
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    if redirect_to_file:  # `calbridge run 2>file` from a shell inside the unit
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino + 1}"
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, fmt], env=env, stderr=write_end, stdout=subprocess.DEVNULL
    )
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        out = stream.read()
    assert proc.wait(timeout=60) == 0, out
    assert "hunter2-canvas-token" not in out
    return out.splitlines()


def test_journal_lines_start_with_their_priority() -> None:
    lines = _run("text", journal=True)
    assert lines[:5] == [
        "<7>DEBUG bridge.test: d",
        "<6>INFO bridge.test: i",
        "<4>WARNING bridge.test: w",
        "<3>ERROR bridge.test: e",
        "<2>CRITICAL bridge.test: c",
    ]
    traceback = lines[5:]
    assert traceback[0] == "<3>ERROR bridge.test: failed"
    assert len(traceback) > 3 and all(line.startswith("<3>") for line in traceback)
    assert traceback[-1] == "<3>ValueError: bad ***"


def test_json_lines_under_the_journal_keep_their_priority() -> None:
    lines = _run("json", journal=True)
    assert lines[2].startswith('<4>{"time": ') and '"level": "warning"' in lines[2]


def test_no_prefix_when_stderr_is_not_the_journal() -> None:
    for lines in (_run("text", journal=False), _run("text", journal=False, redirect_to_file=True)):
        assert not any(PRIORITY_LINE.match(line) for line in lines), lines[:3]
        assert lines[2].endswith(" WARNING bridge.test: w") and lines[2][:4].isdigit()  # a date
