"""Leave nothing behind: one registry of finalizers, run at interpreter exit.

SIGTERM and SIGHUP are turned into KeyboardInterrupt, so they stop a run the
way Ctrl-C does: pytest ends the session and unwinds its fixtures (stopping
servers, removing containers); whatever they did not finish runs here at exit.
"""

from __future__ import annotations

import atexit
import signal
from collections.abc import Callable
from types import FrameType

_finalizers: dict[int, Callable[[], None]] = {}
_installed = False


def register(fn: Callable[[], None]) -> int:
    """Run ``fn`` at exit unless unregistered first; returns a token."""
    _install()
    token = id(fn)
    _finalizers[token] = fn
    return token


def unregister(token: int) -> None:
    _finalizers.pop(token, None)


def run_all() -> None:
    while _finalizers:
        _, fn = _finalizers.popitem()
        try:
            fn()
        except Exception:  # noqa: BLE001 - cleanup must go on past one failure
            pass


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(run_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread
            pass
