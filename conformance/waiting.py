"""The one way to wait: poll until a deadline, and say what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05

#: told of every wait as it ends: what was waited for, the seconds it took and its deadline,
#: each less what the wait takes by design (its ``expected``)
Observer = Callable[[str, float, float], None]
_observers: list[Observer] = []
_last_started = [""]


def last_wait() -> str:
    """What the most recent wait to start waited for (a test that runs out of
    its budget names it)."""
    return _last_started[0]


@contextmanager
def observed(observer: Observer) -> Iterator[None]:
    """Tell ``observer`` of every wait that ends inside the block, in any thread."""
    _observers.append(observer)
    try:
        yield
    finally:
        _observers.remove(observer)


def _ended(what: str, t0: float, timeout: float, expected: float) -> None:
    if expected:
        what += f", beyond the {expected:g} s it takes by design"
    for observer in list(_observers):
        observer(what, max(0.0, time.monotonic() - t0 - expected), timeout - expected)


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
    expected: float = 0.0,
) -> T:
    """Call ``predicate`` every ``interval`` s until it returns a truthy value,
    which is returned.  An exception from ``predicate`` counts as a falsy
    observation (the server may be restarting), unless it is not one of
    ``retry_on``: then it propagates at once.  After ``timeout`` seconds,
    raise WaitTimeout with the last value (or exception) and ``context()``.
    ``expected``: what the wait takes by design (a timeout being waited out);
    observers are told the time beyond it, against the deadline's margin beyond it."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    _last_started[0] = f"{what} (deadline {timeout:g}s)"
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                _ended(what, t0, timeout, expected)
                return value
            last = value
        except retry_on as exc:  # recorded and shown on timeout
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    _ended(what, t0, timeout, expected)
    message = f"timed out after {timeout:g}s waiting for {what}; last observed: {last!r}"
    if context is not None:
        try:
            message += "\n" + context()
        except Exception as exc:  # noqa: BLE001
            message += f"\n(context unavailable: {exc})"
    raise WaitTimeout(message)
