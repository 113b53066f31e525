"""Randomized workloads: faker-seeded sequences of pool operations, read from
``fixtures/workloads/*.toml``.  The same seed gives the same sequence."""

from __future__ import annotations

import tomllib
from collections import OrderedDict
from dataclasses import dataclass

from faker import Faker

from conformance.paths import fixtures_dir


@dataclass(frozen=True)
class Workload:
    steps: int
    ci_seeds: tuple[int, ...]
    weights: dict[str, int]

    @classmethod
    def load(cls, name: str = "random_ops") -> Workload:
        data = tomllib.loads((fixtures_dir() / "workloads" / f"{name}.toml").read_text())
        return cls(int(data["steps"]), tuple(data["ci_seeds"]), dict(data["weights"]))

    def operations(self, seed: int) -> list[tuple[str, int]]:
        """``steps`` (operation, random number) pairs for ``seed``."""
        fake = Faker()
        fake.seed_instance(seed)
        ops = fake.random_elements(elements=self.weights_for_faker(), length=self.steps, use_weighting=True)
        return [(op, fake.pyint(min_value=0, max_value=10_000)) for op in ops]

    def weights_for_faker(self) -> OrderedDict[str, float]:
        total = sum(self.weights.values())
        return OrderedDict((op, w / total) for op, w in sorted(self.weights.items()))
