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
-- ignore_sigterm is bounded: a fast shutdown waits for it
SELECT * FROM bgw_pool.submit('ignore_sigterm', '{"ms": 30001}');
-- a stop names one job: both parts of its handle are required
SELECT bgw_pool.terminate(NULL, 1);
SELECT bgw_pool.terminate(0, NULL);
SELECT bgw_pool.terminate(-1, 1);
SELECT bgw_pool.terminate(100000, 1);
SELECT bgw_pool.terminate(0, -5);
-- a free slot, and a stale generation: no-ops
SELECT bgw_pool.terminate(0, 0);

-- an unprivileged role granted the pool: jobs that crash, hang or restart
-- the cluster are refused (42501), and so are the pause points
CREATE ROLE regress_bgw_pool_user LOGIN;
GRANT USAGE ON SCHEMA bgw_pool TO regress_bgw_pool_user;
GRANT EXECUTE ON FUNCTION bgw_pool.submit(text, jsonb, name),
    bgw_pool._submit(text, text, text, text, text, text, name),
    bgw_pool.terminate(int, bigint) TO regress_bgw_pool_user;
SET ROLE regress_bgw_pool_user;
SELECT * FROM bgw_pool.submit('crash');
SELECT * FROM bgw_pool.submit('exit', '{"code": 2}');
SELECT * FROM bgw_pool.submit('ignore_sigterm');
SELECT bgw_pool.pause_arm('submit-deadline');
RESET ROLE;

-- pause points: named, none armed; 22004 and 22023 for bad names
SELECT point, armed, waiting FROM bgw_pool.pause_points() ORDER BY point;
SELECT bgw_pool.pause_arm(NULL);
SELECT bgw_pool.pause_arm('no-such-point');
SELECT bgw_pool.pause_release('submit-deadline') AS was_armed;

-- a job submitted, seen running, terminated, its slot freed
CREATE TEMP TABLE h AS SELECT * FROM bgw_pool.submit('sleep', '{"ms": 600000}');
SELECT s.state, s.pid = h.pid AS same_pid, s.handle_status, s.job, s.database = current_database() AS db
  FROM bgw_pool.status s JOIN h USING (slot);
SELECT bgw_pool.terminate(slot, generation - 1) AS stale FROM h;
-- only a role with the job's role's privileges may stop it
SELECT slot AS h_slot, generation AS h_generation FROM h \gset
SET ROLE regress_bgw_pool_user;
SELECT bgw_pool.terminate(:h_slot, :h_generation);
RESET ROLE;
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

-- submit is transactional: the job of a rolled-back transaction never runs
CREATE TABLE bgw_pool_regress_marks (v text);
BEGIN;
CREATE TEMP TABLE r AS SELECT * FROM bgw_pool.submit('sql',
    '{"query": "INSERT INTO public.bgw_pool_regress_marks VALUES (''rolled back'')"}');
SELECT slot AS r_slot, generation AS r_generation FROM r \gset
ROLLBACK;
CREATE TEMP TABLE r AS SELECT :r_slot AS slot;
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT s.state = 'free' FROM bgw_pool.status s JOIN r USING (slot));
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;
SELECT s.state, s.last_exit_code FROM bgw_pool.status s JOIN r USING (slot);
SELECT count(*) AS rows_of_the_rolled_back_job FROM bgw_pool_regress_marks;
DROP TABLE bgw_pool_regress_marks;

DROP OWNED BY regress_bgw_pool_user;
DROP ROLE regress_bgw_pool_user;
