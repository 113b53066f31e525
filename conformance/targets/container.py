"""A server in a container: an init and an idle command as PID 1, postgres
started beside it with pg_ctl through ``docker exec``, its port published on
127.0.0.1 only."""

from __future__ import annotations

import time
from collections.abc import Sequence

from testcontainers.core.container import DockerContainer

from conformance import engine
from conformance.errors import TargetError
from conformance.targets.base import ExecResult, Target

PORT = 5432
DATADIR = "/var/lib/bgwc/data"
LOGFILE = "/var/lib/bgwc/server.log"


class ContainerTarget(Target):
    def __init__(self, image: str, major: int) -> None:
        super().__init__(
            f"bgwc_{engine.RUN_ID}_pg{major}", DATADIR, LOGFILE, f"/usr/lib/postgresql/{major}/bin"
        )
        self.name = f"pg{major}"
        self.major = major
        self.image = image
        self.ext_build_dir = "/usr/src/ext"
        self.pg_config = f"{self.bindir}/pg_config"
        self.started_in_s = 0.0
        self._container = DockerContainer(image).with_kwargs(labels=engine.run_labels())
        # published on loopback only, on a free port: docker-py's (ip, port) form,
        # which with_bind_ports does not accept
        self._container.ports[f"{PORT}/tcp"] = ("127.0.0.1", None)  # type: ignore[assignment]

    def setup(self) -> ContainerTarget:
        """Create the container and start the server (start-to-ready is timed)."""
        t0 = time.monotonic()
        engine.client()  # fail early, with a clear message, without an engine
        self._container.start()
        try:
            self._include_overrides()
            self.start()
        except Exception as exc:
            logs = self._exec(["sh", "-c", f"tail -n 60 {LOGFILE}"], user="root").output
            self.close()
            raise TargetError(f"{self.name}: server did not start: {exc}\n{logs}") from exc
        self.started_in_s = time.monotonic() - t0
        return self

    def _exec(self, argv: Sequence[str], user: str = "postgres", timeout: float = 120) -> ExecResult:
        wrapped = self._container.get_wrapped_container()
        code, out = wrapped.exec_run(["timeout", str(int(timeout)), *argv], user=user)
        return ExecResult(code, out.decode(errors="replace") if out else "")

    def conninfo(self, dbname: str = "postgres") -> str:
        port = self._container.get_exposed_port(PORT)
        return f"host=127.0.0.1 port={port} user=postgres dbname={dbname}"

    def libpq_env(self) -> dict[str, str]:
        return {"PGHOST": "/tmp", "PGPORT": str(PORT), "PGUSER": "postgres"}

    def close(self) -> None:
        self._drop_connection()
        try:
            self._container.stop()
        except Exception:  # noqa: BLE001 - already gone
            pass
