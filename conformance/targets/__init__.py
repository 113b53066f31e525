"""Targets: where a server under test runs.  ``container`` (one per PostgreSQL
major, through testcontainers; with a streaming hot standby beside it in
the primary+standby topology) and ``local`` (the host's server, through
pytest-postgresql) offer the same fault and observation API.  Target names
mean what ``spec.TargetSpec`` says; ``make_target`` is the one place a
server is created and started."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from conformance.targets.base import STOP_MODES, Target
from conformance.targets.container import ContainerTarget
from conformance.targets.local import LocalTarget
from conformance.targets.replica import StandbyTarget
from conformance.targets.spec import TargetSpec

if TYPE_CHECKING:
    from conformance.config import KitConfig

__all__ = [
    "STOP_MODES",
    "ContainerTarget",
    "LocalTarget",
    "StandbyTarget",
    "Target",
    "TargetSpec",
    "make_target",
]


def make_target(name: str, kit: KitConfig) -> Target:
    """Create and start the target ``name`` for the kit's extension."""
    from conformance import engine, images

    spec = TargetSpec.parse(name)
    if spec.major is None:
        return LocalTarget(kit.extension, kit.pg_config).setup()
    image = images.build_extension(spec.major, kit.extension, kit.base)
    if not spec.has_standby:
        return ContainerTarget(image.tag, spec.major).setup()
    network = engine.create_network(f"bgwc_{engine.RUN_ID}_pg{spec.major}_{uuid.uuid4().hex[:6]}")
    primary = ContainerTarget(image.tag, spec.major, spec.name, network=network)
    try:
        primary.setup()
        primary.standby = StandbyTarget(image.tag, primary).setup()
    except BaseException:
        primary.close()  # the standby too, and the network
        raise
    return primary
