"""Pool adapters: the operations the suite needs, mapped onto one extension's
own interface.  A profile in ``fixtures/profiles/<name>.toml`` names the
adapter class and its settings."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

from conformance.adapters.base import Handle, NotApplicable, PoolAdapter, Profile, Slot
from conformance.errors import KitError
from conformance.paths import fixtures_dir
from conformance.targets import Target

__all__ = ["Handle", "NotApplicable", "PoolAdapter", "Profile", "Slot", "load_profile", "make_adapter"]


def load_profile(name_or_path: str) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = fixtures_dir() / "profiles" / f"{name_or_path}.toml"
    if not path.is_file():
        raise KitError(f"no extension profile {name_or_path!r} (looked for {path})")
    data = tomllib.loads(path.read_text())
    try:
        return Profile(
            name=data["name"],
            adapter=data["adapter"],
            extension=data["extension"],
            launcher_backend_type=data["launcher_backend_type"],
            worker_backend_type=data["worker_backend_type"],
            worker_title=data["worker_title"],
            launcher_restart_policy=data["launcher_restart_policy"],
            launcher_restart_s=float(data["launcher_restart_s"]),
            server={k: str(v) for k, v in data.get("server", {}).items()},
        )
    except KeyError as exc:
        raise KitError(f"profile {path}: missing key {exc}") from None


def make_adapter(profile: Profile, target: Target) -> PoolAdapter:
    module, _, cls = profile.adapter.partition(":")
    adapter_cls = getattr(importlib.import_module(module), cls)
    return adapter_cls(profile, target)
