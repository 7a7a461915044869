"""The Canvas side of write-back: send one command, or ask whether it already happened.

This is the Canvas adapter's error boundary for writes: every exception of the client becomes
a typed :class:`WriteResult` here, so the executor never parses or catches Canvas errors.
A write is never retried after it may have reached Canvas (the journal resolves it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from bridge.canvas.client import CanvasClient
from bridge.errors import (
    BridgeError,
    CanvasError,
    CanvasNotFound,
    CanvasUnavailable,
    ReservationRefused,
)
from bridge.model.outcomes import CommandKind, CommandOutcome

log = logging.getLogger("bridge.writeback")


@dataclass(frozen=True)
class WriteResult:
    outcome: CommandOutcome  # APPLIED, REFUSED, FAILED or UNKNOWN
    detail: str = ""
    new_reservation_id: int | None = None


class CanvasWrites(Protocol):
    """What the executor needs from Canvas. The real one wraps :class:`CanvasClient`; the
    state-machine test brings a fake with injectable failures."""

    async def send(self, kind: CommandKind, params: Mapping[str, int], reason: str) -> WriteResult:
        """Carry out the command once."""
        ...

    async def verify(self, kind: CommandKind, params: Mapping[str, int]) -> bool | None:
        """Did Canvas already do it? None when Canvas cannot tell us now."""
        ...


class ClientWrites:
    """:class:`CanvasWrites` over a Canvas client opened per use."""

    def __init__(self, client: Callable[[], AbstractAsyncContextManager[CanvasClient]]) -> None:
        self._client = client

    async def send(self, kind: CommandKind, params: Mapping[str, int], reason: str) -> WriteResult:
        try:
            async with self._client() as client:
                if kind is CommandKind.CANCEL:
                    await client.cancel_reservation(params["reservation_id"], cancel_reason=reason)
                    return WriteResult(CommandOutcome.APPLIED, "cancelled")
                if kind is CommandKind.REBOOK:
                    made = await client.reserve(params["to_slot_id"], cancel_existing=True)
                else:
                    made = await client.reserve(params["slot_id"])
                return WriteResult(CommandOutcome.APPLIED, f"reservation {made.id}", made.id)
        except ReservationRefused as exc:
            return WriteResult(CommandOutcome.REFUSED, exc.canvas_message)
        except CanvasUnavailable as exc:
            return WriteResult(CommandOutcome.UNKNOWN, str(exc))
        except CanvasError as exc:
            return WriteResult(CommandOutcome.FAILED, str(exc))
        except BridgeError as exc:  # e.g. a token that cannot be read any more: nothing was sent
            return WriteResult(CommandOutcome.UNKNOWN, str(exc))

    async def verify(self, kind: CommandKind, params: Mapping[str, int]) -> bool | None:
        try:
            async with self._client() as client:
                if kind is CommandKind.CANCEL:
                    try:
                        event = await client.calendar_event(params["reservation_id"])
                    except CanvasNotFound:
                        return True
                    return event.workflow_state == "deleted"
                slot = params["to_slot_id"] if kind is CommandKind.REBOOK else params["slot_id"]
                return bool((await client.calendar_event(slot)).reserved)
        except BridgeError as exc:
            log.info("write-back: cannot ask Canvas now whether %s happened: %s", kind, exc)
            return None
