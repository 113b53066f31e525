"""MEM: the pool's launcher does not keep memory for the jobs it ran.

A launcher lives as long as the server: whatever it keeps per job and never
frees grows for ever.  The clause runs batches of short jobs, submitted back
to back by several sessions, and reads the launcher's own memory after each:
its TopMemoryContext (``pg_log_backend_memory_contexts``, from 14), or on 13
its anonymous memory from ``/proc/<pid>/smaps_rollup``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable

import psycopg
import pytest

from conformance.adapters import NotApplicable
from conformance.deadlines import (
    MEM_BATCH_END_S,
    MEM_BATCH_S,
    MEM_BATCHES,
    MEM_GROWTH_BYTES,
    MEM_REPORT_S,
    MEM_WARMUP_S,
    SLOT_FREE_S,
)
from conformance.figures import Figures
from conformance.suite.pool_under_test import Pool

#: the first major with pg_log_backend_memory_contexts
MEMORY_CONTEXTS_SINCE = 14
#: "TopMemoryContext: 85504 total in 5 blocks; 13192 free (9 chunks); 72312 used"
_TOP = re.compile(r"TopMemoryContext: \d+ total in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used")
_ANONYMOUS = re.compile(r"^Anonymous:\s+(\d+) kB", re.M)


def _meter(pool: Pool, pid: int) -> tuple[str, Callable[[], int]]:
    """What is measured of process ``pid``, and how (bytes)."""
    t = pool.target
    if t.major < MEMORY_CONTEXTS_SINCE:

        def anonymous() -> int:
            found = _ANONYMOUS.search(t.run(["cat", f"/proc/{pid}/smaps_rollup"]))
            assert found, f"no Anonymous line in /proc/{pid}/smaps_rollup"
            return int(found.group(1)) * 1024

        return "anonymous memory (/proc/<pid>/smaps_rollup)", anonymous

    def top_context() -> int:
        offset = t.log_offset()
        assert t.scalar("SELECT pg_log_backend_memory_contexts(%s)", pid) is True, f"no process {pid}"
        start = f"logging memory contexts of PID {pid}"

        def reported() -> re.Match[str] | None:
            text = t.log_since(offset)
            return _TOP.search(text, text.find(start)) if start in text else None

        return int(
            t.wait_until(reported, MEM_REPORT_S, what=f"the memory contexts of {pid} in the log").group(1)
        )

    return "TopMemoryContext used bytes (pg_log_backend_memory_contexts)", top_context


def _batch(pool: Pool, submitters: int, seconds: float = MEM_BATCH_S) -> Counter[str]:
    """``submitters`` sessions each submit short jobs back to back for
    ``seconds``; what the submits got: ``ok``, or an SQLSTATE and message."""
    got: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def submit() -> None:
        try:
            with pool.target.connect() as conn:
                while time.monotonic() < end:
                    try:
                        pool.adapter.submit("exit_at_once", conn=conn)
                        outcome = "ok"
                    except psycopg.Error as exc:
                        outcome = f"{exc.sqlstate} {str(exc).splitlines()[0]}"
                    with lock:
                        got[outcome] += 1
        except BaseException as exc:  # noqa: BLE001 - the test judges it
            with lock:
                got[f"submitter broke: {exc!r}"] += 1

    threads = [threading.Thread(target=submit, daemon=True) for _ in range(submitters)]
    for th in threads:
        th.start()
    pool.target.wait_until(
        lambda: not any(th.is_alive() for th in threads),
        seconds + MEM_BATCH_END_S,
        what=f"{submitters} submitters to finish their batch",
        expected=seconds,
    )
    # the batch's jobs all exit at once: once none is listed, the launcher has little left to do
    pool.target.wait_until(lambda: not pool.adapter.jobs(), SLOT_FREE_S, what="the batch's jobs gone")
    return got


@pytest.mark.clause("MEM-1")
def test_launcher_memory_does_not_grow_over_batches_of_jobs(
    pool: Pool, figures: Figures, record_property: Callable[[str, object], None]
) -> None:
    if pool.profile.pool is None or pool.profile.pool.launcher is None:
        pytest.skip("not applicable: the pool has no launcher")
    launcher = pool.wait_launcher()
    try:
        # one fewer than the slots: the submitters keep the launcher busy without filling the pool
        submitters = max(1, pool.configured_capacity() - 1)
    except NotApplicable:
        submitters = 2
    what, measure = _meter(pool, launcher)
    record_property("measured", what)
    warm = _batch(pool, submitters, MEM_WARMUP_S)  # caches, free lists and the handles' array filled once
    readings = [measure()]
    batches = [warm]
    for _ in range(MEM_BATCHES):
        batches.append(_batch(pool, submitters))
        readings.append(measure())
    record_property("memory_bytes", readings)
    record_property("submits", [dict(b) for b in batches])
    assert pool.adapter.launcher_pid() == launcher, "the launcher restarted during the batches"
    jobs = sum(b["ok"] for b in batches[1:])
    unaccounted = Counter(
        {k: n for b in batches for k, n in b.items() if k != "ok" and not k.startswith("53000")}
    )
    assert not unaccounted, f"submits that neither ran nor were refused for capacity (53000): {unaccounted}"
    growth = readings[-1] - readings[0]
    figures.add("MEM-1", "launcher memory growth over the batches", growth, MEM_GROWTH_BYTES, unit="bytes")
    assert growth <= MEM_GROWTH_BYTES, (
        f"the launcher's memory grew by {growth} bytes over {jobs} short jobs in {MEM_BATCHES} batches "
        f"(more than {MEM_GROWTH_BYTES}): it keeps memory per job and never frees it; {what} after the "
        f"warm-up and after each batch: {readings}"
    )
