"""Targets: where a server under test runs.  ``container`` (one per PostgreSQL
major, through testcontainers) and ``local`` (the host's server, through
pytest-postgresql) offer the same fault and observation API."""

from conformance.targets.base import STOP_MODES, Target
from conformance.targets.container import ContainerTarget
from conformance.targets.local import LocalTarget

__all__ = ["STOP_MODES", "ContainerTarget", "LocalTarget", "Target"]
