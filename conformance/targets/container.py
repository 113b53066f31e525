"""A server in a container: an init and an idle command as PID 1, postgres
started beside it with pg_ctl through ``docker exec``, its port published on
127.0.0.1 only.

When the engine runs on this host's kernel and the kit may read its /proc
(root, as here), the container's processes, their signals and the server's
files are reached from the host: /proc/<init>/ (its pid namespace) and
/proc/<init>/root/ (its files).  A ``docker exec`` costs 60 to 100 ms of
wall time and about 50 ms of the engine's CPU (measured: 0.054 core-s per
``docker exec true``), and the waits poll many times a second: the
processes, signals, files and whether the server runs (``pg_ctl status``,
asked before and after every test) are read from here; only starting and
stopping the server (``pg_ctl``) go through ``docker exec``.
Elsewhere (a remote engine) every such step goes through ``docker exec``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from testcontainers.core.container import DockerContainer

from conformance import engine
from conformance.deadlines import SLOW
from conformance.errors import TargetError
from conformance.processes import ProcEntry, proc_table, ps_text
from conformance.targets.base import ExecResult, Target

PORT = 5432
DATADIR = "/var/lib/bgwc/data"
LOGFILE = "/var/lib/bgwc/server.log"


class ContainerTarget(Target):
    """``name``: how the results call it (default ``pgNN``); ``role``: the
    server's part in its topology; ``network``: the engine network that
    joins it to its standby (the container is then reachable there by
    ``host``)."""

    def __init__(
        self, image: str, major: int, name: str = "", role: str = "primary", network: str | None = None
    ) -> None:
        suffix = "" if role == "primary" else f"_{role}"
        super().__init__(
            f"bgwc_{engine.RUN_ID}_pg{major}{suffix}", DATADIR, LOGFILE, f"/usr/lib/postgresql/{major}/bin"
        )
        self.name = name or f"pg{major}"
        self.major = major
        self.role = role
        self.network = network
        #: its host name on the network: unique, as a run may hold two pairs of one major
        self.host = f"{self.cluster_name}_{network.rsplit('_', 1)[-1]}" if network else ""
        self.image = image
        self.ext_build_dir = "/usr/src/ext"
        self.pg_config = f"{self.bindir}/pg_config"
        self.started_in_s = 0.0
        self._init_pid: int | None = None  # the container's init on this host, when /proc shows it
        self._container = self._new_container()

    def _new_container(self) -> DockerContainer:
        kwargs: dict[str, object] = {"labels": engine.run_labels()}
        if self.network:
            kwargs["network"] = self.network
        container = DockerContainer(self.image).with_kwargs(**kwargs)
        if self.network:
            container.with_name(self.host)
        # published on loopback only, on a free port: docker-py's (ip, port) form,
        # which with_bind_ports does not accept
        container.ports[f"{PORT}/tcp"] = ("127.0.0.1", None)  # type: ignore[assignment]
        return container

    def _start_container(self) -> None:
        """Start the container (in a slow pass with its CPU cut: ``deadlines.SLOW``)."""
        self._container.start()
        if SLOW > 1:
            engine.throttle(self._container.get_wrapped_container().id, SLOW)
        self._init_pid = self._host_init_pid()

    def setup(self) -> ContainerTarget:
        """Create the container and start the server (start-to-ready is timed)."""
        t0 = time.monotonic()
        engine.client()  # fail early, with a clear message, without an engine
        self._start_container()
        try:
            self._prepare_datadir()
            self.start()
        except Exception as exc:
            logs = self._exec(["sh", "-c", f"tail -n 60 {LOGFILE}"], user="root").output
            self.close()
            raise TargetError(f"{self.name}: server did not start: {exc}\n{logs}") from exc
        self.started_in_s = time.monotonic() - t0
        return self

    def _fresh(self) -> None:
        """A new container from the same image (a new port), with the current settings, started."""
        self._drop_connection()
        try:
            self._container.stop()
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._container = self._new_container()
        self._start_container()
        self._prepare_datadir()
        self._write_overrides()
        self.start()

    def _prepare_datadir(self) -> None:
        """The image's data directory made this target's: the override file
        included; on a network, replication connections from it allowed."""
        self._include_overrides()
        if self.network:
            line = "host replication all all trust"
            self.run(
                [
                    "sh",
                    "-c",
                    f"grep -qx '{line}' {DATADIR}/pg_hba.conf || echo '{line}' >> {DATADIR}/pg_hba.conf",
                ]
            )

    def _exec(self, argv: Sequence[str], user: str = "postgres", timeout: float = 120) -> ExecResult:
        wrapped = self._container.get_wrapped_container()
        code, out = wrapped.exec_run(["timeout", str(int(timeout)), *argv], user=user)
        return ExecResult(code, out.decode(errors="replace") if out else "")

    def _host_init_pid(self) -> int | None:
        """The container's init as this host sees it, if its /proc and files are readable here."""
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        pid = int(wrapped.attrs.get("State", {}).get("Pid") or 0)
        try:
            if pid <= 1 or os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid"):
                return None
            if not Path(f"/proc/{pid}/root{DATADIR}").is_dir():
                return None
        except OSError:
            return None
        return pid

    def _table(self) -> list[ProcEntry]:
        assert self._init_pid is not None
        return proc_table(self._init_pid)

    def _ps(self) -> str:
        return ps_text(self._table()) if self._init_pid else super()._ps()

    def _live(self, pid: int) -> ProcEntry | None:
        """The live (non-zombie) process with this pid in the container, if any."""
        return next((e for e in self._table() if e.pid == pid and e.state != "Z"), None)

    def _exists(self, pid: int) -> bool:
        if not self._init_pid:
            return super()._exists(pid)
        return self._live(pid) is not None

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        if not self._init_pid:
            return super()._signal(pid, sig)
        entry = self._live(pid)
        if entry is None:
            return  # gone meanwhile
        try:
            os.kill(entry.host_pid, sig)
        except ProcessLookupError:
            pass

    def _host_path(self, path: str) -> Path:
        return Path(f"/proc/{self._init_pid}/root{path}")

    def _read(self, path: str, offset: int = 0) -> str | None:
        if not self._init_pid:
            return super()._read(path, offset)
        try:
            with self._host_path(path).open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return None

    def _write(self, path: str, text: str) -> None:
        if not self._init_pid:
            return super()._write(path, text)
        target = self._host_path(path)
        owner = target.parent.stat()  # the server's user owns its directory
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.chown(tmp, owner.st_uid, owner.st_gid)
        tmp.replace(target)

    def _size(self, path: str) -> int | None:
        if not self._init_pid:
            return super()._size(path)
        try:
            return self._host_path(path).stat().st_size
        except OSError:
            return None

    def forks_unfailable(self) -> str | None:
        if not self._init_pid:
            return "the engine's host does not show the container's processes: nothing could watch them"
        return None

    def _limit_forks(self, limited: bool) -> None:
        # its cgroup's pids.max below its task count: no fork succeeds, nothing running is touched
        engine.set_pids_limit(self._container.get_wrapped_container().id, 1 if limited else None)

    def conninfo(self, dbname: str = "postgres") -> str:
        port = self._container.get_exposed_port(PORT)
        return f"host=127.0.0.1 port={port} user=postgres dbname={dbname}"

    def libpq_env(self) -> dict[str, str]:
        return {"PGHOST": "/tmp", "PGPORT": str(PORT), "PGUSER": "postgres"}

    def close(self) -> None:
        if self.standby is not None:
            self.standby.close()
        self._drop_connection()
        try:
            self._container.stop()
        except Exception:  # noqa: BLE001 - already gone
            pass
        if self.network and self.role == "primary":
            engine.remove_network(self.network)
