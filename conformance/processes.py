"""The OS view of a server: processes parsed from ``ps``."""

from __future__ import annotations

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
