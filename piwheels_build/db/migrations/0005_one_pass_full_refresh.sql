-- 0005: a full refresh_queue() reads wanted_builds once and touches only
-- the rows that change.
--
-- 0002's full branch computed the view twice over every version (once for
-- the DELETE's anti-join, once for the INSERT) and offered every wanted row,
-- about 5 million at PyPI's scale, to INSERT ... ON CONFLICT: one
-- speculative index probe each, although nearly all are queued already
-- (docs/benchmarks.md, section 1). Now refresh_queue_all() materialises the
-- view once in a CTE; the DELETE and the INSERT are anti-joins against it and
-- against the queue, so only the rows that change are written.
--
-- Nested loops are off for this function only (a function's SET is undone
-- when it returns): a queue that is empty or small when the statement is
-- planned makes a nested-loop anti-join with a sequential scan of the queue
-- look cheap, and that scan would then re-read, for every wanted row, the
-- pages this very INSERT adds (quadratic: 13 s for 50,000 rows). Hash and
-- merge anti-joins read the queue once. The per-package and per-version
-- branches (what sync and finish_build call) are index probes and keep their
-- nested loops.

CREATE FUNCTION refresh_queue_all() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_nestloop = off AS $$
DECLARE
    added integer;
BEGIN
    WITH w AS MATERIALIZED (
        SELECT package, version, abi_tag, released FROM wanted_builds
    ), gone AS (
        DELETE FROM queue q
        WHERE q.build_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM w
                          WHERE w.package = q.package AND w.version = q.version
                            AND w.abi_tag = q.abi_tag)
    )
    INSERT INTO queue (package, version, abi_tag, released)
    SELECT w.package, w.version, w.abi_tag, w.released FROM w
    WHERE NOT EXISTS (SELECT 1 FROM queue q
                      WHERE q.package = w.package AND q.version = w.version
                        AND q.abi_tag = w.abi_tag)
    ON CONFLICT DO NOTHING;  -- a sync or a finish may queue the same row meanwhile
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END $$;

REVOKE EXECUTE ON FUNCTION refresh_queue_all() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_queue_all() TO piwheels_master;

CREATE OR REPLACE FUNCTION refresh_queue(p_package text DEFAULT NULL, p_version text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    added integer;
BEGIN
    IF p_package IS NULL THEN
        RETURN refresh_queue_all();
    ELSIF p_version IS NULL THEN
        DELETE FROM queue q
        WHERE q.package = p_package AND q.build_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM wanted_builds w
                          WHERE w.package = q.package AND w.version = q.version
                            AND w.abi_tag = q.abi_tag);
        INSERT INTO queue (package, version, abi_tag, released)
        SELECT w.package, w.version, w.abi_tag, w.released FROM wanted_builds w
        WHERE w.package = p_package
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM queue q
        WHERE q.package = p_package AND q.version = p_version AND q.build_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM wanted_builds w
                          WHERE w.package = q.package AND w.version = q.version
                            AND w.abi_tag = q.abi_tag);
        INSERT INTO queue (package, version, abi_tag, released)
        SELECT w.package, w.version, w.abi_tag, w.released FROM wanted_builds w
        WHERE w.package = p_package AND w.version = p_version
        ON CONFLICT DO NOTHING;
    END IF;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END $$;
