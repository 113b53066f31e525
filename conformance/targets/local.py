"""A server on this machine, set up through pytest-postgresql's executor
with the host's pg_ctl; the extension is built with the host's pg_config.

PostgreSQL refuses to run as root: when the kit runs as root, every command
(pytest-postgresql's included) runs as ``BGWC_LOCAL_USER`` (default
``postgres``) through ``runuser``.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from port_for import get_port
from pytest_postgresql.executors import PostgreSQLExecutor

from conformance import cleanup, engine
from conformance.errors import KitError
from conformance.images import Extension
from conformance.targets.base import ExecResult, Target


def _pg_config(pg_config: str, flag: str) -> str:
    try:
        return subprocess.run([pg_config, flag], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KitError(
            f"cannot run {pg_config} {flag}: {exc}; install postgresql-server-dev-N or pass --bgwc-pg-config"
        ) from exc


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Adopt orphaned descendants (a killed postmaster's children), so that
    they are reaped here: a zombie postmaster would still pass PostgreSQL's
    ``kill(pid, 0)`` check and block the next start."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_zombie_children() -> None:
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:  # a process may exit between the listing and the read (ESRCH, ENOENT)
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and fields[1] == me:
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


class LocalTarget(Target):
    def __init__(self, ext: Extension, pg_config: str = "pg_config") -> None:
        self.pg_config = shutil.which(pg_config) or pg_config
        bindir = _pg_config(self.pg_config, "--bindir")
        version = _pg_config(self.pg_config, "--version")  # "PostgreSQL 15.18 (Debian ...)"
        self.major = int(version.split()[1].split(".")[0])
        self.name = "local"
        self.ext = ext
        self.user = os.environ.get("BGWC_LOCAL_USER", "postgres") if os.geteuid() == 0 else None
        _become_subreaper()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"bgwc-local-{engine.RUN_ID}-"))
        self._token = cleanup.register(self.close)
        self.port = get_port(None)
        super().__init__(
            f"bgwc_{engine.RUN_ID}_local", str(self._tmp / "data"), str(self._tmp / "server.log"), bindir
        )
        self.ext_build_dir = str(self._tmp / "ext-build")
        self.started_in_s = 0.0
        self._pgpp: PostgreSQLExecutor | None = None

    def setup(self) -> LocalTarget:
        t0 = time.monotonic()
        try:
            if self.user:
                uid = pwd.getpwnam(self.user).pw_uid
                os.chown(self._tmp, uid, -1)
            self._install_extension()
            # kept for the target's lifetime: the executor removes its data
            # directory when it is collected
            self._pgpp = self._executor()
            self._pgpp.init_directory()
            self.run(["sh", "-c", f"cat >> {self.datadir}/postgresql.conf < {self._conf_fragment()}"])
            self._include_overrides()
            self.start()
        except Exception:
            self.close()
            raise
        self.started_in_s = time.monotonic() - t0
        return self

    def _fresh(self) -> None:
        """A new data directory (initdb again), with the current settings, started."""
        self._drop_connection()
        self._pgpp = self._executor()
        self._pgpp.init_directory()  # removes the old directory first
        self.run(["sh", "-c", f"cat >> {self.datadir}/postgresql.conf < {self._conf_fragment()}"])
        self._include_overrides()
        self._write_overrides()
        self.start()

    def _executor(self) -> PostgreSQLExecutor:
        return PostgreSQLExecutor(
            executable=self._pg_ctl_path(),
            host="127.0.0.1",
            port=self.port,
            datadir=self.datadir,
            unixsocketdir=str(self._tmp),
            logfile=self.logfile,
            startparams="-w",
            dbname="postgres",
            user="postgres",
        )

    def _pg_ctl_path(self) -> str:
        """pg_ctl as pytest-postgresql will call it: wrapped to drop root."""
        real = f"{self.bindir}/pg_ctl"
        if not self.user:
            return real
        wrapper = self._tmp / "pg_ctl"
        wrapper.write_text(f'#!/bin/sh\ncd /\nexec runuser -u {self.user} -- {real} "$@"\n')
        wrapper.chmod(0o755)
        return str(wrapper)

    def _conf_fragment(self) -> str:
        from conformance.paths import fixtures_dir

        frag = self._tmp / "server.conf"
        text = (fixtures_dir() / "conf" / "server.conf").read_text()
        text = text.replace("unix_socket_directories = '/tmp'", f"unix_socket_directories = '{self._tmp}'")
        frag.write_text(text + f"port = {self.port}\nshared_preload_libraries = '{self.ext.library}'\n")
        frag.chmod(0o644)
        return str(frag)

    def _install_extension(self) -> None:
        """Build the sources with the host's pg_config: the recipe, or PGXS."""
        if self.ext.source is None:
            return
        build = Path(self.ext_build_dir)
        build.mkdir(parents=True, exist_ok=True)
        for rel in self.ext.files():
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.ext.source / rel, build / rel)
        if self.ext.recipe:
            argv = ["sh", "-ec", self.ext.recipe]
            what = f"--recipe {self.ext.recipe!r}"
        else:
            argv = [
                "make",
                f"PG_CONFIG={self.pg_config}",
                "with_llvm=no",
                *self.ext.make_args.split(),
                "install",
            ]
            what = f"--extension {self.ext.source}"
        env = {**os.environ, "PG_CONFIG": self.pg_config, "PATH": f"{self.bindir}:{os.environ['PATH']}"}
        res = subprocess.run(argv, capture_output=True, text=True, cwd=build, env=env)
        if res.returncode != 0:
            tail = "\n".join(f"  | {ln}" for ln in (res.stdout + res.stderr).strip().splitlines()[-8:])
            raise KitError(f"{what}: building with {self.pg_config} failed; last lines:\n{tail}")
        pkglib = Path(_pg_config(self.pg_config, "--pkglibdir"))
        for lib in self.ext.preload:
            if not (pkglib / f"{lib.removeprefix('$libdir/')}.so").is_file():
                raise KitError(f"preload {lib!r}: {what} installed no {lib}.so into {pkglib}")

    def _exec(self, argv: Sequence[str], user: str = "postgres", timeout: float = 120) -> ExecResult:
        _reap_zombie_children()
        if self.user and user != "root":
            argv = ["runuser", "-u", self.user, "--", *argv]
        try:
            res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd="/")
        except subprocess.TimeoutExpired as exc:
            return ExecResult(124, f"timed out after {timeout}s: {exc}")
        return ExecResult(res.returncode, res.stdout + res.stderr)

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def libpq_env(self) -> dict[str, str]:
        return {"PGHOST": str(self._tmp), "PGPORT": str(self.port), "PGUSER": "postgres"}

    def close(self) -> None:
        self._drop_connection()
        if (self._tmp / "data" / "postmaster.pid").exists():
            self._exec([f"{self.bindir}/pg_ctl", "-D", self.datadir, "stop", "-m", "immediate", "-w"])
        for proc in self.processes() if self._tmp.exists() else []:
            self._exec(["kill", "-s", "KILL", str(proc.pid)], user="root")
        shutil.rmtree(self._tmp, ignore_errors=True)
        cleanup.unregister(self._token)
