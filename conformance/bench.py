"""Submit-to-running latency of the reference pool, side by side with its
floor on the same server: a backend registering a worker itself and waiting
for its start (``bgw_pool.direct_launch_us()``)."""

from __future__ import annotations

import statistics

from conformance.figures import percentile
from conformance.targets import Target

# timed by the server, like direct_launch_us(): the CTEs run in order
SUBMIT = (
    "WITH t AS MATERIALIZED (SELECT clock_timestamp() AS t0),"
    " s AS MATERIALIZED (SELECT * FROM t, bgw_pool.submit(%s, %s::jsonb))"
    " SELECT slot, generation, extract(epoch FROM clock_timestamp() - t0)::float8 * 1000 FROM s"
)


def measure(target: Target, rounds: int = 50) -> dict[str, dict[str, float]]:
    """Milliseconds, p50 and p95 of:
    - ``direct``: the floor, register + WaitForBackgroundWorkerStartup in a backend;
    - ``submit_no_connect``: submit of exit_at_once (attaches without connecting);
    - ``submit``: submit of a job that connects to its database first;
    - ``exit_to_free``: from the planned end of a 50 ms sleep (started_at + 50 ms)
      to its slot being free (last_exit_at), timed by the server."""
    target.sql("CREATE EXTENSION IF NOT EXISTS bgw_pool")
    samples: dict[str, list[float]] = {
        k: [] for k in ("direct", "submit_no_connect", "submit", "exit_to_free")
    }
    with target.connect() as conn:
        for _ in range(rounds):
            samples["direct"].append(conn.execute("SELECT bgw_pool.direct_launch_us()").fetchone()[0] / 1000)
            for key, job, args in (
                ("submit_no_connect", "exit_at_once", "{}"),
                ("submit", "sleep", '{"ms": 50}'),
            ):
                slot, gen, ms = conn.execute(SUBMIT, (job, args)).fetchone()
                samples[key].append(ms)
            started = conn.execute(
                "SELECT started_at FROM bgw_pool.status WHERE slot = %s AND generation = %s", (slot, gen)
            ).fetchone()[0]

            def freed(slot: int = slot, gen: int = gen) -> tuple[object] | None:
                return conn.execute(
                    "SELECT last_exit_at FROM bgw_pool.status WHERE slot = %s AND generation = %s"
                    " AND state = 'free'",
                    (slot, gen),
                ).fetchone()

            exited = target.wait_until(freed, 5, what="the 50 ms job's slot to be free")[0]
            samples["exit_to_free"].append((exited - started).total_seconds() * 1000 - 50)
    return {
        k: {"p50": round(statistics.median(v), 3), "p95": round(percentile(v, 0.95), 3), "n": len(v)}
        for k, v in samples.items()
    }
