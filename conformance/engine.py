"""The Docker engine: the one client, the kit's labels, and cleanup of
containers and of the networks that join a primary to its standby.

Ryuk (testcontainers' reaper) must be pulled from a registry, so it cannot run
here; the kit owns cleanup instead.  Every container it starts carries
``LABEL_RUN`` (this run's id) and ``LABEL_OWNER`` (host and pid of the process
that started it).  Containers are removed when their target stops, at
interpreter exit, on SIGINT/SIGTERM, and stale ones whose owner process is
gone are swept when the next run starts.
"""

from __future__ import annotations

import os
import socket
import uuid
from functools import cache
from typing import Any

import docker
import docker.errors

from conformance import cleanup
from conformance.errors import EngineUnavailable

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

LABEL_RUN = "org.bgw-conformance.run"
LABEL_OWNER = "org.bgw-conformance.owner"
RUN_ID = os.environ.get("BGWC_RUN_ID") or uuid.uuid4().hex[:12]
_OWNER = f"{socket.gethostname()}:{os.getpid()}"


def run_labels() -> dict[str, str]:
    return {LABEL_RUN: RUN_ID, LABEL_OWNER: _OWNER}


@cache
def client() -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=300)
        c.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable.no_daemon(str(exc).splitlines()[0]) from exc
    cleanup.register(remove_run_containers)
    return c


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's run: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(container: Any) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass


def create_network(name: str) -> str:
    """A bridge network of this run, labelled as its containers are (so that
    the same clean-up removes it); return its name."""
    client().networks.create(name, driver="bridge", labels=run_labels())
    return name


def remove_network(name: str) -> None:
    """Remove a network of the kit (its containers removed first); gone already is fine."""
    try:
        client().networks.get(name).remove()
    except docker.errors.NotFound:
        pass


def set_pids_limit(container_id: str, limit: int | None) -> None:
    """Set a running container's cgroup ``pids.max`` (None: no limit).  A
    limit at or below the number of its tasks makes every fork in it fail
    with EAGAIN while the processes it has run on.  docker-py's
    ``update_container`` has no such argument: the engine's own endpoint
    (``POST /containers/{id}/update``, ``PidsLimit``; -1 is none) is called."""
    api = client().api
    response = api._post_json(  # the endpoint docker-py does not wrap
        api._url("/containers/{0}/update", container_id),
        data={"PidsLimit": -1 if limit is None else limit},
    )
    api._raise_for_status(response)


def throttle(container_id: str, factor: float) -> None:
    """Cut a running container's CPU to 1/``factor`` of one core (its cgroup's
    CPU quota): a process in it runs at best ``factor`` times slower than
    alone on a core, and all of them together get no more."""
    period = 100_000
    quota = max(1_000, int(period / factor))
    client().api.update_container(container_id, cpu_period=period, cpu_quota=quota)


def sweep_stale() -> list[str]:
    """Remove the kit's containers and networks whose owning process is dead; return their names."""
    removed = []
    # ignore_removed: another run may remove its own containers while we list them
    for c in client().containers.list(all=True, filters={"label": LABEL_RUN}, ignore_removed=True):
        if not _owner_alive(c.labels.get(LABEL_OWNER, "")):
            _remove(c)
            removed.append(c.name)
    for n in client().networks.list(filters={"label": LABEL_RUN}):
        if not _owner_alive(n.attrs.get("Labels", {}).get(LABEL_OWNER, "")):
            try:
                n.remove()
                removed.append(n.name)
            except docker.errors.DockerException:
                pass  # in use by a container another run still owns
    return removed


def remove_run_containers() -> None:
    """Remove every container and network of this run (idempotent, safe at exit)."""
    try:
        c = docker.from_env(timeout=30)
        mine = {"label": f"{LABEL_RUN}={RUN_ID}"}
        for container in c.containers.list(all=True, filters=mine, ignore_removed=True):
            _remove(container)
        for network in c.networks.list(filters=mine):
            try:
                network.remove()
            except docker.errors.NotFound:
                pass
    except docker.errors.DockerException:
        pass
