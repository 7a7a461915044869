"""What ``calbridge sync`` prints and the exit code it returns, from typed results only.

Exit codes: 0 all handled (write-backs waiting for the rate limit or for Canvas are listed as
pending, and are retried on the next run); 8 a safety stop waits for
``calbridge writebacks approve``; 10 a Canvas poll failed; 11 a CalDAV calendar failed or some
of its objects could not be handled; 12 both 10 and 11; 13 an account was skipped because
another live process was syncing it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from bridge.model.outcomes import AccountState, CommandOutcome, TargetReport

if TYPE_CHECKING:
    from bridge.daemon.cycle import AccountResult

EXIT_SAFETY_STOP = 8
EXIT_POLL_FAILED, EXIT_PUSH_FAILED, EXIT_BOTH_FAILED, EXIT_BUSY = 10, 11, 12, 13


def exit_code(results: Sequence[AccountResult]) -> int:
    poll_failed = any(r.state is AccountState.POLL_FAILED for r in results)
    push_failed = any(r.push_failed for r in results)
    if poll_failed and push_failed:
        return EXIT_BOTH_FAILED
    if poll_failed:
        return EXIT_POLL_FAILED
    if push_failed:
        return EXIT_PUSH_FAILED
    if any(r.stopped for r in results):
        return EXIT_SAFETY_STOP
    if any(r.state is AccountState.BUSY for r in results):
        return EXIT_BUSY
    return 0


def _target_lines(report: TargetReport, dry_run: bool) -> Iterator[str]:
    verb = "would" if dry_run else "did"
    head = f"  calendar {report.target_id}: {report.state}"
    if report.failure:
        yield f"{head}: {report.failure}"
        return
    counts = {
        op: sum(1 for a in report.actions if a.op == op and a.ok)
        for op in ("create", "update", "delete")
    }
    yield (
        head
        + f" ({report.unchanged} unchanged, "
        + ", ".join(f"{n} {op}" for op, n in counts.items())
        + ")"
    )
    if report.stop is not None:
        yield f"    SAFETY STOP: {report.stop.describe()}"
    for command in report.commands:
        label = {
            CommandOutcome.PLANNED: "would send to Canvas",
            CommandOutcome.APPLIED: "Canvas",
            CommandOutcome.HELD: "held (safety stop)",
            CommandOutcome.RATE_LIMITED: "PENDING",
            CommandOutcome.UNKNOWN: "PENDING",
        }.get(command.outcome, "Canvas")
        yield f"    {label}: {command.describe()}"
    for uid, reason in report.restored:
        yield f"    put back {uid}: {reason}"
    for action in report.actions:
        if action.op in ("create", "update", "delete") or not action.ok:
            state = "" if action.ok else f" FAILED: {action.detail}"
            yield f"    calendar ({verb}): {action.op} {action.uid}{state}"
    for conflict in report.conflicts:
        yield f"    conflict: {conflict}"
    for error in report.item_errors:
        yield f"    ERROR in {error.describe()}"


def human_lines(results: Sequence[AccountResult], *, dry_run: bool) -> Iterator[str]:
    for r in results:
        tag = " [dry run: nothing written]" if dry_run else ""
        if r.state is AccountState.BUSY:
            yield f"{r.account_id}: busy: {r.error}{tag}"
            continue
        if r.state is AccountState.POLL_FAILED:
            yield f"{r.account_id}: FAILED: {r.error}{tag}"
            continue
        feeds = ", ".join(
            f"{f.feed_id} {f.events} events{' changed' if f.changed else ''}" for f in r.feeds
        )
        yield f"{r.account_id}: ok" + (f" (feeds: {feeds})" if feeds else "") + tag
        for report in r.targets:
            yield from _target_lines(report, dry_run)
