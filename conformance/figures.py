"""Figures: what a test measured, beside the deadline (or bound) its clause
holds it to.  Each is recorded in the test's ``figures`` property, shown on
the run page as "measured / deadline" (flagged above half the deadline) and
charted across runs on the matrix page.

A figure: ``clause``, ``name`` (what was timed, e.g. "terminate → slot
free"), ``value``, ``deadline`` (the clause's limit on it, or None for a
figure without one), ``unit`` ("s", "ms", "lines/10s", ...) and, for a
latency, ``floor`` (what the same step costs without the extension);
``what`` names the step when the name is generic (the closest wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: a figure above this share of its deadline is flagged: too close for comfort
NEAR = 0.5
#: the figure every suite test records: its wait that came closest to its deadline
CLOSEST_WAIT = "closest wait to its deadline"


class Figures:
    """A test's figures, recorded as they are measured (a failing test keeps those it got)."""

    def __init__(self, record_property: Callable[[str, object], None]) -> None:
        self._record = record_property
        self.items: list[dict[str, Any]] = []

    def add(
        self,
        clause: str,
        name: str,
        value: float,
        deadline: float | None,
        unit: str = "s",
        floor: float | None = None,
        what: str | None = None,
    ) -> float:
        fig: dict[str, Any] = {
            "clause": clause,
            "name": name,
            "value": round(float(value), 4),
            "deadline": deadline,
            "unit": unit,
        }
        if floor is not None:
            fig["floor"] = round(float(floor), 4)
        if what is not None:
            fig["what"] = what
        self.items.append(fig)
        self._record("figures", list(self.items))
        return value

    @contextmanager
    def timing(self, clause: str, name: str, deadline: float) -> Iterator[None]:
        """Time the block (seconds): recorded when it completes, and when it
        fails too (then at least the time it took to fail)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.add(clause, name, time.monotonic() - t0, deadline)


def percentile(values: list[float], q: float) -> float:
    """The value at quantile ``q`` (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def of(test: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures a test record holds (none for records without them)."""
    figs = (test.get("properties") or {}).get("figures")
    return [f for f in figs if isinstance(f, dict) and "value" in f] if isinstance(figs, list) else []


def near(fig: dict[str, Any]) -> bool:
    """Above half its deadline."""
    deadline = fig.get("deadline")
    return bool(deadline) and fig["value"] > NEAR * float(deadline)


def text(fig: dict[str, Any]) -> str:
    """ "0.412 / 1 s" (or "0.412 s" without a deadline), with the floor when there is one."""
    unit = fig.get("unit") or ""
    shown = f"{fig['value']:.3g}" + (f" / {fig['deadline']:g}" if fig.get("deadline") else "") + f" {unit}"
    if fig.get("floor") is not None:
        shown += f" (floor {fig['floor']:.3g} {unit})"
    return shown.strip()
