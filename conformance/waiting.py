"""The one way to wait: poll until a deadline, and say what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05


class WaitTimeout(AssertionError):
    """A deadline passed; the message holds the last observation and context."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    what: str = "condition",
    context: Callable[[], str] | None = None,
    interval: float = POLL_INTERVAL_S,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call ``predicate`` every ``interval`` s until it returns a truthy value,
    which is returned.  An exception from ``predicate`` counts as a falsy
    observation (the server may be restarting), unless it is not one of
    ``retry_on``: then it propagates at once.  After ``timeout`` seconds,
    raise WaitTimeout with the last value (or exception) and ``context()``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except retry_on as exc:  # recorded and shown on timeout
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    message = f"timed out after {timeout:g}s waiting for {what}; last observed: {last!r}"
    if context is not None:
        try:
            message += "\n" + context()
        except Exception as exc:  # noqa: BLE001
            message += f"\n(context unavailable: {exc})"
    raise WaitTimeout(message)
