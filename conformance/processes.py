"""The OS view of a server: processes parsed from ``ps``, or read from the
host's ``/proc`` for a container whose processes the host can see."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_CLIENT = re.compile(r"\[local\]|\S+\(\d+\)")
PS_ARGV = ["ps", "-ww", "-e", "-o", "pid=,ppid=,stat=,args="]

AUXILIARY = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "autovacuum worker",
    "logical replication launcher",
    "stats collector",
    "startup",
    "archiver",
    "walsender",
    "walreceiver",
    "io worker",
    "walsummarizer",
)


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    title: str
    backend_type: str  # 'postmaster', an auxiliary type, a bgworker's name, or 'client backend'


def backend_type(title: str, cluster_name: str) -> str:
    """The backend type shown by a title ``postgres: CLUSTER: REST``.  A
    background worker's REST is its ``bgw_name``; a client backend's is
    ``user database host activity``."""
    marker = f"postgres: {cluster_name}: "
    if marker not in title:
        return "postmaster"
    rest = title.split(marker, 1)[1].strip()
    for aux in AUXILIARY:
        if rest.startswith(aux):
            return aux
    if rest.startswith("parallel worker"):
        return "parallel worker"
    if _CLIENT.search(rest):
        return "client backend"
    return rest


def parse_ps(output: str, cluster_name: str) -> list[Process]:
    """Live (non-zombie) processes whose title names ``cluster_name``: the
    postmaster (whose command line carries it) and every child it titled."""
    procs = []
    for line in output.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        pid, ppid, stat, args = parts
        if stat.startswith("Z") or cluster_name not in args or args.startswith(("ps ", "sh ", "kill ")):
            continue
        procs.append(Process(int(pid), int(ppid), args, backend_type(args, cluster_name)))
    return procs


@dataclass(frozen=True)
class ProcEntry:
    host_pid: int
    pid: int  # as the container sees it
    ppid: int  # as the container sees it (0 for its init's parent)
    state: str
    args: str


def _status(host_pid: str) -> dict[str, str]:
    with open(f"/proc/{host_pid}/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


def proc_table(init_host_pid: int) -> list[ProcEntry]:
    """Every process in the pid namespace of ``init_host_pid`` (a container's
    init), read from the host's /proc: what ``ps`` inside would print, without
    a ``docker exec`` (about 1 ms instead of about 100)."""
    ns = os.readlink(f"/proc/{init_host_pid}/ns/pid")
    found: list[tuple[int, int, int, str, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            st = _status(entry)
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a for a in f.read().split(b"\0") if a]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # gone meanwhile
        nspid = st.get("NSpid", "").split()
        if len(nspid) < 2:
            continue
        args = b" ".join(argv).decode(errors="replace") or f"[{st.get('Name', '').strip()}]"
        found.append((int(entry), int(nspid[-1]), int(st["PPid"]), st.get("State", "?")[:1], args))
    ns_of = {host: pid for host, pid, _, _, _ in found}
    return [ProcEntry(host, pid, ns_of.get(ppid, 0), state, args) for host, pid, ppid, state, args in found]


def ps_text(table: list[ProcEntry]) -> str:
    """The table as ``ps -o pid=,ppid=,stat=,args=`` prints it (for parse_ps)."""
    return "".join(f"{e.pid} {e.ppid} {e.state} {e.args}\n" for e in table)
