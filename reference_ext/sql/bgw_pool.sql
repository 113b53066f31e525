-- bgw_pool regression tests: the SQL surface, on a server with bgw_pool preloaded.
-- Output is the same on every major: no pids, times or version-specific text.
CREATE EXTENSION IF NOT EXISTS bgw_pool;
\set VERBOSITY sqlstate

-- the view's shape
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute
 WHERE attrelid = 'bgw_pool.status'::regclass AND attnum > 0
 ORDER BY attnum;

-- a fresh pool: every slot free, the invariants hold, a launcher runs
SELECT count(*) = (SELECT capacity FROM bgw_pool.stats()) AS all_slots,
       count(*) FILTER (WHERE state <> 'free') AS busy,
       count(pid) AS pids, count(handle_status) AS handles
  FROM bgw_pool.status;
SELECT * FROM bgw_pool.check();
SELECT bgw_pool.launcher_pid() IS NOT NULL AS launcher_runs;
SELECT capacity > 0 AS has_capacity FROM bgw_pool.stats();

-- argument validation: 22004 for nulls, 22023 for invalid values
SELECT * FROM bgw_pool.submit(NULL);
SELECT * FROM bgw_pool.submit('sleep', NULL);
SELECT * FROM bgw_pool.submit('sleep', '{"ms": 10}', NULL);
SELECT * FROM bgw_pool.submit('no_such_job');
SELECT * FROM bgw_pool.submit('sleep', '[1, 2]');
SELECT * FROM bgw_pool.submit('sleep');
SELECT * FROM bgw_pool.submit('sleep', '{"ms": -1}');
SELECT * FROM bgw_pool.submit('sleep', '{"ms": "soon"}');
SELECT * FROM bgw_pool.submit('exit', '{"code": 256}');
SELECT * FROM bgw_pool.submit('exit');
SELECT * FROM bgw_pool.submit('sql');
SELECT * FROM bgw_pool.submit('error', jsonb_build_object('message', repeat('x', 2000)));
SELECT * FROM bgw_pool.submit('sleep', '{"ms": 10}', 'no_such_database');
SELECT * FROM bgw_pool.submit('sleep', '{"ms": 10}', 'template0');
SELECT bgw_pool.terminate(NULL);
SELECT bgw_pool.terminate(-1);
SELECT bgw_pool.terminate(100000);
SELECT bgw_pool.terminate(0, -5);
-- a free slot, and a stale generation: no-ops
SELECT bgw_pool.terminate(0);
SELECT bgw_pool.terminate(0, 0);

-- a job submitted, seen running, terminated, its slot freed
CREATE TEMP TABLE h AS SELECT * FROM bgw_pool.submit('sleep', '{"ms": 600000}');
SELECT s.state, s.pid = h.pid AS same_pid, s.handle_status, s.job, s.database = current_database() AS db
  FROM bgw_pool.status s JOIN h USING (slot);
SELECT bgw_pool.terminate(slot, generation - 1) AS stale FROM h;
SELECT bgw_pool.terminate(slot, generation) AS terminated FROM h;
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT s.state = 'free' FROM bgw_pool.status s JOIN h USING (slot));
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;
SELECT s.state, s.pid, s.last_exit_code FROM bgw_pool.status s JOIN h USING (slot);
SELECT * FROM bgw_pool.check();
