"""The kit's settings: one frozen dataclass, read from pytest's command line
or ini file.  Each option has one help string, used by both.

| option                 | ini                 | default          |
|------------------------|---------------------|------------------|
| --bgwc-target          | bgwc_target         | pg17             |
| --bgwc-extension       | bgwc_extension      | reference_ext    |
| --bgwc-library         | bgwc_library        | (control name)   |
| --bgwc-make-args       | bgwc_make_args      | ""               |
| --bgwc-base            | bgwc_base           | debian:<suite>   |
| --bgwc-pg-config       | bgwc_pg_config      | pg_config        |
| --bgwc-profile         | bgwc_profile        | bgw_pool         |
| --bgwc-seed            | bgwc_seed           | (CI seed set)    |

A command-line value wins over the ini value, which wins over the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.errors import KitError
from conformance.images import SUPPORTED_MAJORS, Extension

OPTIONS: dict[str, tuple[str, str]] = {
    "target": (
        "pg17",
        "targets to run on, comma-separated: pg13,pg15,pg17,pg18 (containers) and local (the host's server)",
    ),
    "extension": (
        "",
        "source directory of the extension under test (PGXS); default: the reference extension bgw_pool",
    ),
    "library": ("", "shared_preload_libraries entry; default: the extension's name"),
    "make_args": ("", "extra make arguments for building the extension"),
    "base": ("", "base image for the container targets; default: the Debian suite that ships the major"),
    "pg_config": ("pg_config", "pg_config of the host server for the local target"),
    "profile": ("bgw_pool", "extension profile (pool adapter) the suite drives"),
    "seed": ("", "replay randomized workloads with this seed (default: the fixed CI seed set)"),
}


@dataclass(frozen=True)
class KitConfig:
    targets: tuple[str, ...]
    extension: Extension
    base: str | None
    pg_config: str
    profile: str
    seed: int | None

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> KitConfig:
        targets = tuple(t.strip() for t in str(values["target"]).split(",") if t.strip())
        valid = {f"pg{m}" for m in SUPPORTED_MAJORS} | {"local"}
        if not targets or not set(targets) <= valid:
            raise KitError(f"--bgwc-target {values['target']!r}: choose from {', '.join(sorted(valid))}")
        ext_dir = Path(values["extension"]) if values["extension"] else None
        ext = Extension.from_dir(ext_dir, values["library"] or None, values["make_args"] or "")
        seed = values["seed"]
        if seed not in ("", None) and not str(seed).isdigit():
            raise KitError(f"--bgwc-seed {seed!r}: give a non-negative integer")
        return cls(
            targets,
            ext,
            values["base"] or None,
            values["pg_config"],
            values["profile"],
            int(seed) if seed not in ("", None) else None,
        )
