"""Randomized workloads (RAND), read from ``fixtures/workloads/*.toml``: how
many sequences of how many steps each CI seed drives.  The same seed gives
the same sequences (hypothesis, seeded; faker for the data)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from conformance.paths import fixtures_dir


@dataclass(frozen=True)
class Workload:
    steps: int  # at most this many operations in a sequence
    examples: int  # sequences per seed
    ci_seeds: tuple[int, ...]

    @classmethod
    def load(cls, name: str = "random_ops", table: str | None = None) -> Workload:
        """The file's top-level workload (RAND-1's), or its ``table`` (e.g. ``churn``, RAND-2's)."""
        data = tomllib.loads((fixtures_dir() / "workloads" / f"{name}.toml").read_text())
        if table is not None:
            data = data[table]
        return cls(int(data["steps"]), int(data["examples"]), tuple(data["ci_seeds"]))
