"""A streaming hot standby: a second container from the primary's image, on
the network the kit creates for the pair, its data directory a
``pg_basebackup`` of the primary (``-R``: it starts as a standby).  It has the
whole fault and observation API of a ``Target``; what only a standby has is
here: whether it streams, whether it has replayed what the primary wrote,
its promotion, and its rebuild from a new base backup (after a promotion, or
when it no longer follows its primary: a primary rebuilt from a fresh data
directory, or one restarted with settings the standby cannot follow).

The standby's walreceiver names itself by the standby's ``cluster_name``
(core's default application_name for it), so the primary's
``pg_stat_replication`` and ``synchronous_standby_names`` know it by that name.
"""

from __future__ import annotations

from conformance.targets.container import DATADIR, PORT, ContainerTarget

#: how long a standby may take to stream again after its primary restarted (it
#: retries every RETRY_INTERVAL), or to replay what the primary wrote
STREAMING_S = 15.0
#: wal_retrieve_retry_interval on the standby: after its primary restarts it
#: reconnects within this, not core's default 5 s
RETRY_INTERVAL = "200ms"


class StandbyTarget(ContainerTarget):
    def __init__(self, image: str, primary: ContainerTarget) -> None:
        super().__init__(image, primary.major, f"pg{primary.major} standby", "standby", primary.network)
        self.primary = primary

    def _prepare_datadir(self) -> None:
        """The image's cluster replaced by a base backup of the primary,
        configured (``-R``) to stream from it."""
        backup = (
            f"rm -rf {DATADIR} && {self.bindir}/pg_basebackup -h {self.primary.host} -p {PORT} "
            f"-U postgres -D {DATADIR} -X stream -R -c fast && chmod 700 {DATADIR} && "
            f"echo \"wal_retrieve_retry_interval = '{RETRY_INTERVAL}'\" >> {DATADIR}/postgresql.auto.conf"
        )
        self.run(["sh", "-c", backup], timeout=120)
        super()._prepare_datadir()

    @property
    def topology(self) -> str:
        return "standby"

    # -- what only a standby has -------------------------------------------------
    def in_recovery(self) -> bool:
        return bool(self.scalar("SELECT pg_is_in_recovery()", idempotent=True))

    def streaming(self) -> bool:
        """In recovery, and its walreceiver streams from the primary."""
        row = self.sql(
            "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)", idempotent=True
        )[0]
        return bool(row[0]) and row[1] == "streaming"

    def wait_caught_up(self, timeout: float = STREAMING_S) -> None:
        """Wait until the standby streams and has replayed everything the
        primary had flushed when this was called: the kit's servers commit
        asynchronously, so a caller that needs its commit on the standby
        commits it with synchronous_commit on (as canaries and set-up are).
        Not the insert position: a record in a page the primary has no
        reason to flush yet (its idle running-xacts snapshot) is sent only
        when something later flushes it, seconds on."""
        lsn = self.primary.scalar("SELECT pg_current_wal_flush_lsn()::text", idempotent=True)
        self.wait_until(
            lambda: (
                self.streaming()
                and self.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn, idempotent=True)
            ),
            timeout,
            what=f"the standby streaming and replayed up to the primary's {lsn}",
        )

    def promote(self, timeout: float = 60.0) -> None:
        """``pg_promote()``, waiting until it is done; the standby is then a
        primary of its own, rebuilt by the next ``follow``."""
        self._record("promote", "")
        ok = self.scalar(f"SELECT pg_promote(true, {int(timeout)})")
        assert ok, f"pg_promote() did not finish within {timeout:g}s\n{self.log_tail()}"

    def follow(self, why: str) -> str | None:
        """Make this a standby that streams and has caught up with its
        primary: as it is if it does, else rebuilt from a new base backup.
        Return what was done (None: nothing), also among the faults."""
        if self.is_running():
            try:
                if self.in_recovery():  # a promoted server follows no one: rebuilt at once
                    self.wait_caught_up()
                    return None
            except Exception:  # noqa: BLE001 - a standby that does not follow is rebuilt
                pass
        done = f"rebuilt from a new base backup of the primary: {why}"
        self._record("rebuild", done)
        self._fresh()
        self.generation += 1
        self.wait_caught_up()
        return done

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info["role"] = "standby"
        info["primary"] = self.primary.name
        return info
