"""Pool adapters: the operations the pool and faults tiers need, mapped onto
one extension's own interface.  A profile's ``[pool]`` table names the
adapter: ``sql`` (the built-in SQL adapter, driven by the profile's
templates) or ``module:Class`` (a Python adapter, for what SQL cannot express)."""

from __future__ import annotations

import importlib

from conformance.adapters.base import Handle, Job, NotApplicable, PoolAdapter, Slot
from conformance.errors import KitError
from conformance.profile import Profile
from conformance.targets import Target

__all__ = ["Handle", "Job", "NotApplicable", "PoolAdapter", "Slot", "make_adapter"]


def make_adapter(profile: Profile, target: Target) -> PoolAdapter:
    if profile.pool is None:
        raise NotApplicable(f"profile {profile.name} has no [pool] table")
    if profile.pool.adapter == "sql":
        from conformance.adapters.sql import SqlAdapter

        return SqlAdapter(profile, target)
    module, _, cls = profile.pool.adapter.partition(":")
    try:
        adapter_cls = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise KitError(
            f"profile {profile.path}: key 'pool.adapter': cannot load {profile.pool.adapter}: {exc}"
        ) from None
    return adapter_cls(profile, target)
