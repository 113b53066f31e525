"""Nothing is left behind: not after Ctrl-C, not after SIGTERM, not from a dead run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from conformance import engine
from conformance.config import KitConfig
from conformance.waiting import wait_until

HERE = Path(__file__).parent


def _ours(run_id: str) -> list[str]:
    """The run's containers and networks."""
    mine = {"label": f"{engine.LABEL_RUN}={run_id}"}
    return [c.name for c in engine.client().containers.list(all=True, filters=mine)] + [
        n.name for n in engine.client().networks.list(filters=mine)
    ]


def _server_processes(run_id: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"bgwc_{run_id}_" in line and " Z" not in line]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("topology", ["", "+standby"], ids=["primary", "primary+standby"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_leaves_nothing_behind(
    sig: signal.Signals, topology: str, bgwc_config: KitConfig
) -> None:
    if topology and not all(s.in_container for s in bgwc_config.specs):
        pytest.skip("not applicable: a standby runs beside a container target only")
    run_id = f"int{uuid.uuid4().hex[:8]}"
    argv = [
        sys.executable,
        "-P",  # import the kit as installed, not from the working directory
        "-m",
        "pytest",
        str(HERE / "interrupted"),
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        f"--bgwc-target={','.join(t + topology for t in bgwc_config.targets)}",
        f"--bgwc-extension={bgwc_config.extension.source}",
        f"--bgwc-library={bgwc_config.extension.library}",
    ]
    child = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "BGWC_RUN_ID": run_id},
        # Ctrl-C as at a terminal, even when this test runs in a background
        # job of a non-interactive shell, which starts with SIGINT ignored
        preexec_fn=_default_sigint,
    )
    assert child.stdout is not None
    seen: list[str] = []

    def ready() -> bool:
        line = child.stdout.readline()  # type: ignore[union-attr]
        seen.append(line)
        return line.startswith("READY") or child.poll() is not None

    wait_until(ready, 300, what="the child run to start its first target")
    assert child.poll() is None, "".join(seen)
    assert _ours(run_id) or _server_processes(run_id), "the child started nothing to clean up"
    child.send_signal(sig)
    wait_until(lambda: child.poll() is not None, 60, what=f"the child to exit after {sig.name}")
    assert _ours(run_id) == [], "containers or networks left behind"
    assert _server_processes(run_id) == [], "server processes left behind"
    leftovers = list(Path(tempfile.gettempdir()).glob(f"bgwc-*{run_id}*"))
    assert leftovers == [], "temporary directories left behind"


def test_stale_containers_of_dead_runs_are_swept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    image = engine.client().images.list(name="bgwc/*")[0].tags[0]
    labels = {engine.LABEL_RUN: "stale", engine.LABEL_OWNER: f"{os.uname().nodename}:{dead.pid}"}
    c = engine.client().containers.create(image, labels=labels)
    removed = engine.sweep_stale()
    assert c.name in removed
    assert _ours("stale") == []


def test_containers_of_live_runs_are_kept() -> None:
    image = engine.client().images.list(name="bgwc/*")[0].tags[0]
    labels = {engine.LABEL_RUN: "live", engine.LABEL_OWNER: f"{os.uname().nodename}:{os.getpid()}"}
    c = engine.client().containers.create(image, labels=labels)
    try:
        assert c.name not in engine.sweep_stale()
        assert _ours("live") == [c.name]
    finally:
        c.remove(force=True)


def test_stale_networks_of_dead_runs_are_swept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    labels = {engine.LABEL_RUN: "stalenet", engine.LABEL_OWNER: f"{os.uname().nodename}:{dead.pid}"}
    n = engine.client().networks.create(f"bgwc_stalenet_{uuid.uuid4().hex[:6]}", labels=labels)
    assert n.name in engine.sweep_stale()
    assert _ours("stalenet") == []
