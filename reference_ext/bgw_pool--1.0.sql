/* bgw_pool--1.0.sql */

\echo Use "CREATE EXTENSION bgw_pool" to load this file. \quit

-- The schema is the extension's own: one that another role owns, that
-- anyone but its owner may create objects in, or that holds anything already
-- is refused (such a role could put look-alikes beside what this script
-- creates, and a superuser calling the pool would run them).
DO $$
BEGIN
  IF (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = 'bgw_pool')
       OPERATOR(pg_catalog.<>) (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
                WHERE n.nspname = 'bgw_pool' AND a.privilege_type = 'CREATE'
                  AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner)
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_class
                WHERE relnamespace = 'bgw_pool'::pg_catalog.regnamespace)
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc
                WHERE pronamespace = 'bgw_pool'::pg_catalog.regnamespace)
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_type
                WHERE typnamespace = 'bgw_pool'::pg_catalog.regnamespace)
  THEN
    RAISE EXCEPTION 'schema "bgw_pool" already exists and is not the extension''s own'
      USING ERRCODE = '42P06',
            HINT = 'Drop or rename that schema, then create the extension.';
  END IF;
END
$$;

CREATE FUNCTION _submit(job text, args_type text, ms text, code text, message text, query text,
                        dbname name)
RETURNS TABLE (slot int, generation bigint, pid int)
AS 'MODULE_PATHNAME', 'bgw_pool_submit'
LANGUAGE C VOLATILE;

-- Start a job in a pool worker; returns its handle (slot, generation) and
-- pid once the worker runs.
-- The job runs as the caller (its current user, unable to change role),
-- with that role's own settings, once the calling transaction commits: a
-- job of a transaction or savepoint that rolls back never runs.
-- Jobs that crash, hang or restart the cluster need a superuser.
CREATE FUNCTION submit(job text, args jsonb DEFAULT '{}', dbname name DEFAULT current_database())
RETURNS TABLE (slot int, generation bigint, pid int)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM @extschema@._submit($1, pg_catalog.jsonb_typeof($2),
                                    $2 OPERATOR(pg_catalog.->>) 'ms',
                                    $2 OPERATOR(pg_catalog.->>) 'code',
                                    $2 OPERATOR(pg_catalog.->>) 'message',
                                    $2 OPERATOR(pg_catalog.->>) 'query', $3)
$$;

-- Ask the worker of a handle to stop; false for a free slot or a stale
-- generation.  Only roles with the privileges of the job's role may (42501).
-- Both parts of the handle are required: a stop names one job.
CREATE FUNCTION terminate(slot int, generation bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'bgw_pool_terminate'
LANGUAGE C VOLATILE;

CREATE FUNCTION _status(
    OUT slot int, OUT state text, OUT generation bigint, OUT database name, OUT role name, OUT pid int,
    OUT handle_status text, OUT job text, OUT started_at timestamptz,
    OUT last_exit_code int, OUT last_exit_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bgw_pool_status'
LANGUAGE C VOLATILE;

CREATE VIEW status AS SELECT * FROM @extschema@._status();

CREATE FUNCTION launcher_pid()
RETURNS int
AS 'MODULE_PATHNAME', 'bgw_pool_launcher_pid'
LANGUAGE C VOLATILE;

CREATE FUNCTION stats(
    OUT launched bigint, OUT exited bigint, OUT failed bigint, OUT crashed bigint,
    OUT rejected bigint, OUT launcher_restarts bigint, OUT capacity int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bgw_pool_stats'
LANGUAGE C VOLATILE;

-- The violated invariants of the pool, one row each; none when consistent.
CREATE FUNCTION @extschema@.check(OUT invariant text, OUT detail text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bgw_pool_check'
LANGUAGE C VOLATILE;

CREATE FUNCTION direct_launch_us()
RETURNS float8
AS 'MODULE_PATHNAME', 'bgw_pool_direct_launch_us'
LANGUAGE C VOLATILE;

-- Pause points (superuser only): a process reaching an armed point waits
-- there until it is released; pause_points() lists who waits where.
CREATE FUNCTION pause_arm(point text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'bgw_pool_pause_arm'
LANGUAGE C VOLATILE;

CREATE FUNCTION pause_release(point text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'bgw_pool_pause_release'
LANGUAGE C VOLATILE;

CREATE FUNCTION pause_points(OUT point text, OUT armed boolean, OUT hits bigint, OUT waiting int[])
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bgw_pool_pause_points'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION pause_arm(text), pause_release(text), pause_points() FROM PUBLIC;
REVOKE ALL ON FUNCTION _submit(text, text, text, text, text, text, name), submit(text, jsonb, name),
    terminate(int, bigint), _status(), launcher_pid(), stats(), @extschema@.check(), direct_launch_us() FROM PUBLIC;
REVOKE ALL ON status FROM PUBLIC;
