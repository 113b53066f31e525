"""The deadlines and bounds of CONTRACT.md's clauses, in seconds (or lines,
CPU seconds, cycles), declared once: the suite's tests, the per-test budgets
and ``bgw-conformance init`` read them from here."""

from __future__ import annotations

import os

#: ``run --slow FACTOR``: the slow pass runs with the server's CPU cut to 1/FACTOR of one
#: core (``BGWC_SLOW`` in its environment).  Only the deadlines in SCALED_WHEN_SLOW
#: scale by it: core's own start-up and crash recovery are CPU work the extension does not
#: own; every promise of the extension (restart intervals, shutdowns, storm and CPU bounds)
#: keeps its deadline.
SLOW = float(os.environ.get("BGWC_SLOW") or 1.0)
SCALED_WHEN_SLOW = ("START_S", "CRASH_RECOVERY_S")

# -- the bgworker tier
START_S = 10.0 * SLOW  # START-1: every promised process up after a start (scaled when slow)
RESTART_SLACK_S = 5.0  # STOP-1, KILL-1: on top of the promised restart interval
#: STOP-1, KILL-1: how long a kind declared to stay down is watched: past the longest restart
#: interval extensions commonly use (60 s) and a margin, so a declaration that is false shows
STAYS_DOWN_S = 65.0
DUPLICATE_WATCH_S = 6.0  # STOP-1, KILL-1: at most this long watched for a duplicate once back
CRASH_RECOVERY_S = 30.0 * SLOW  # KILL-1, CYCLE-1, CRASH-*: a crash-restart completed (scaled when slow)
PM_DEATH_S = 1.0  # ORPHAN-1, PMD-1: every process gone after the postmaster's death
WORKLOAD_GONE_S = 10.0  # before a test: the previous test's workload workers gone
SHUTDOWN_S = 10.0  # SHUT-1, SHUT-2
DB_COMMAND_S = 10.0  # DB-1, DB-2
BARRIER_S = 10.0  # BARRIER-1: each barrier-emitting command
OBSERVE_S = 10.0  # the window a retry storm is counted in
STORM_LINES = 20  # SLOTS-1: at most this many log lines per OBSERVE_S window
BUSY_CPU_S = 2.0  # SLOTS-3: at most this much CPU time (all its processes) per OBSERVE_S window
DB_RETRY_GRACE_S = 5.0  # DB-3: after the drop, this long to give up on the database
DB_RETRY_LINES = 2  # DB-3: at most this many lines naming it in the OBSERVE_S window after that
#: DB-1, DB-2: the workers the profile declares in a scratch database attached there before it acts
DB_ATTACH_S = START_S
#: STOP-2, KILL-2: the workload's workers are running as it runs them when their count held this long
WORKLOAD_SETTLE_S = 2.0
#: STOP-2, KILL-2: after a kind at rest is back, the workload's workers at their count again within
#: this (a start of the workload's workers, as START-2's deadline)
WORKLOAD_BACK_S = START_S
#: DB-4, DB-5: the extension's configured database dropped or renamed; its kinds at rest are
#: given this long to settle (one failed connect, a restart) before the OBSERVE_S window
CONFIGURED_GRACE_S = 5.0
CYCLES = 3  # CYCLE-1
#: SIG-1: a kind is settled after a signal when its processes are unchanged for this long (a
#: handler sets the latch: a process acts on a signal at once, or dies of it at once)
SIGNAL_SETTLE_S = 1.0
#: FORK-1, SLOTS-5: the workload's start answers (starts or refuses) within this while no fork
#: succeeds, or no slot is free
SHORTAGE_ANSWER_S = 10.0
#: SLOTS-4: the most values of max_worker_processes below rest tried (each a restart and a window)
BELOW_REST_VALUES = 4
#: SLOTS-5: how long parallel workers hold every free slot once the workload was started
SLOTS_HELD_S = 5.0
#: SLOTS-5: the free slots parallel workers take
SLOTS_HELD = 2
#: PROGRESS-1: the [progress] probe increases within its within_s, by default this
PROGRESS_S = 10.0
#: RELOAD-1: the [reload] setting shows within its within_s, by default this
RELOAD_S = 5.0
#: RELOAD-1: the postmaster has read its configuration again after pg_reload_conf() (core's part)
POSTMASTER_RELOAD_S = 10.0


# -- the pool and faults tiers
SLOT_FREE_S = 2.0  # TERM-1, JOB-2, INV-2: a stopped job's slot free
LAUNCHER_START_S = 10.0  # a pool's launcher up after a start
ALL_GONE_S = 10.0  # every server process gone after the postmaster was killed
CAPACITY_BACK_S = 5.0  # INV-3: capacity back for a submit after a worker's exit
#: a process reaches an armed pause point within this of the act that leads there
PAUSE_REACH_S = 10.0
#: EXH-7: a submit while no fork succeeds is refused within this (the postmaster reports a failed
#: fork to the worker's registrant at once: a pool has nothing to wait for)
FORK_REFUSED_S = 2.0
#: TXN-1: the slot of a job free after its submitting transaction ended (an aborted one's worker
#: exits without running it; a committed one's short job has run), as a stopped job's (SLOT_FREE_S)
TXN_END_S = SLOT_FREE_S
#: LOCK-1: the pool answers (status, submit) within this while a session holds a catalog lock
LOCK_ANSWER_S = 5.0
#: LOCK-1: once that lock is released, every session of the scenario is done within this
LOCK_UNWIND_S = 10.0
#: MEM-1: a warm-up batch of short jobs submitted back to back, then MEM_BATCHES batches
MEM_WARMUP_S = 2.0
MEM_BATCHES = 3
MEM_BATCH_S = 6.0
#: MEM-1: every submitter of a batch has returned within this after the batch's end
MEM_BATCH_END_S = 10.0
#: MEM-1: the launcher reports its memory (in the log, or /proc on 13) within this
MEM_REPORT_S = 5.0
#: MEM-1: at most this much growth of the launcher's memory from after the warm-up to the last batch
MEM_GROWTH_BYTES = 16 * 1024
#: EXH-6: its submits (EXH6_SUBMITS at most) are made within this
EXH6_WITHIN_S = 60.0
#: BOUND-1: a long job is watched this long, running throughout (a duration that wrapped ends at once)
LONG_JOB_WATCH_S = 2.0
#: INTR-1: a blocking call of the pool ends within this of a cancel or pg_terminate_backend (of its
#: statement_timeout's expiry), as any interruptible wait of core does
INTERRUPT_S = 2.0
#: INTR-2: after a submitter left, another session reads the status and submits within this
LIVENESS_S = 5.0
#: RAND-1, RAND-2: hypothesis shrinks a failing sequence at most this long (its own bound,
#: MAX_SHRINKING_SECONDS, set from here), then prints the smallest it found
SHRINK_S = 300.0
