-- 0010: a build target is (ABI, platform), not an ABI alone.
--
-- cp311 on linux_armv7l and cp311 on linux_aarch64 are two targets: an x86
-- builder's cp311 wheel does not satisfy an ARM builder's. A target is named
-- ABI-PLATFORM, as the tail of a wheel's filename ("cp311-linux_armv7l"; tags
-- never hold '-'), and that name is the key the queue, builds and skips use
-- in place of the ABI tag. The rules stay, per target:
--   - a version is built first on its primary target: the first active
--     target, ordered numerically by Python then by platform name, that its
--     Requires-Python admits;
--   - a pure wheel (ABI "none") covers every target, built once anywhere;
--   - an abi3 wheel for cp3X covers the targets of cp3Y, Y >= X, on its own
--     platform only;
--   - any other final result, a failure included, queues every other active
--     target.
-- Builders register (name, ABI, platform); a new target becomes active and
-- its queue is filled, as a new ABI did.
--
-- Existing data: each ABI becomes its builders' platform's target (an ABI
-- whose builders ran on two platforms becomes two targets). Builds take their
-- builder's target; queue rows and skips are copied to every target of their
-- ABI (a held row goes with its build). An ABI that no builder ever ran is
-- dropped with its unclaimed rows: nothing could claim them, and the first
-- builder of it registers it again.

-- Read the old columns; made again below.
DROP VIEW wanted_builds;

CREATE TABLE targets (
    target       text PRIMARY KEY CHECK (target = abi_tag || '-' || platform_tag),
    abi_tag      text NOT NULL CHECK (abi_tag ~ '^[a-z]+\d+[a-z]*$'),
    platform_tag text NOT NULL CHECK (platform_tag ~ '^[a-z0-9_]+$'),
    py_major     integer NOT NULL,
    py_minor     integer NOT NULL,
    active       boolean NOT NULL DEFAULT true,
    added_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (abi_tag, platform_tag)
);

INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor, active, added_at)
SELECT DISTINCT bu.abi_tag || '-' || bu.platform_tag, bu.abi_tag, bu.platform_tag,
       a.py_major, a.py_minor, a.active, a.added_at
FROM builders bu JOIN abis a ON a.abi_tag = bu.abi_tag;

-- Builders: the target each one builds for. A host reinstalled for another
-- platform under the same name is a new builder (its old builds keep theirs).
ALTER TABLE builders DROP CONSTRAINT builders_abi_tag_fkey;
ALTER TABLE builders ADD COLUMN target text REFERENCES targets;
UPDATE builders SET target = abi_tag || '-' || platform_tag;
ALTER TABLE builders ALTER COLUMN target SET NOT NULL;
ALTER TABLE builders DROP CONSTRAINT builders_name_abi_tag_key;
ALTER TABLE builders ADD CONSTRAINT builders_name_target_key UNIQUE (name, target);

-- Builds: their builder's target.
ALTER TABLE builds ADD COLUMN target text REFERENCES targets;
UPDATE builds b SET target = bu.target FROM builders bu WHERE bu.builder_id = b.builder_id;
ALTER TABLE builds ALTER COLUMN target SET NOT NULL;
DROP INDEX builds_version;
ALTER TABLE builds DROP COLUMN abi_tag;
CREATE INDEX builds_version ON builds (package, version, target);

-- The queue: a held row goes with its build; the others to every target of
-- their ABI.
ALTER TABLE queue DROP CONSTRAINT queue_pkey;
DROP INDEX queue_next;
ALTER TABLE queue ADD COLUMN target text REFERENCES targets;
UPDATE queue q SET target = b.target FROM builds b WHERE b.build_id = q.build_id;
INSERT INTO queue (package, version, abi_tag, target, released, priority, not_before,
                   attempts, queued_at)
SELECT q.package, q.version, q.abi_tag, t.target, q.released, q.priority, q.not_before,
       q.attempts, q.queued_at
FROM queue q JOIN targets t ON t.abi_tag = q.abi_tag
WHERE q.build_id IS NULL;
DELETE FROM queue WHERE target IS NULL;
ALTER TABLE queue ALTER COLUMN target SET NOT NULL;
ALTER TABLE queue DROP COLUMN abi_tag;
ALTER TABLE queue ADD PRIMARY KEY (package, version, target);
CREATE INDEX queue_next ON queue (target, priority DESC, released DESC) WHERE build_id IS NULL;

-- Skips per target.
CREATE TABLE target_skips (
    package  text NOT NULL,
    version  text NOT NULL,
    target   text NOT NULL REFERENCES targets,
    reason   text NOT NULL CHECK (reason IN ('too-many-failures', 'admin')),
    note     text,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, version, target),
    FOREIGN KEY (package, version) REFERENCES versions ON DELETE CASCADE
);
INSERT INTO target_skips (package, version, target, reason, note, at)
SELECT s.package, s.version, t.target, s.reason, s.note, s.at
FROM abi_skips s JOIN targets t ON t.abi_tag = s.abi_tag;
DROP TABLE abi_skips;
DROP TABLE abis;

-- Why a wheel has no alias where the configuration would give it one (an
-- armv7l wheel with ARMv7 code is not published as armv6l): its project page
-- says so.
ALTER TABLE files ADD COLUMN alias_note text;

GRANT ALL ON targets, target_skips TO piwheels_master;
GRANT SELECT ON targets, target_skips TO piwheels_web;

-- 0008's view, per target. Each active target carries the Python bits of the
-- active targets ordered before it (lower_bits) and whether one of those
-- cannot be excluded (lower_other): it is the version's primary when every
-- target before it is excluded. The abi3 coverage is per platform.
CREATE VIEW wanted_builds AS
SELECT v.package, v.version, a.target, v.released
FROM versions v
JOIN packages p ON p.package = v.package
LEFT JOIN (SELECT b.package, b.version, array_agg(DISTINCT b.target) AS targets
           FROM builds b
           WHERE b.status IN ('success', 'failed', 'timeout', 'out-of-memory',
                              'missing-build-dependency', 'not-for-python')
           GROUP BY b.package, b.version) fin
       ON fin.package = v.package AND fin.version = v.version
LEFT JOIN (SELECT s.package, s.version, array_agg(s.target) AS targets
           FROM target_skips s
           GROUP BY s.package, s.version) sk
       ON sk.package = v.package AND sk.version = v.version
LEFT JOIN (SELECT f.package, f.version, bool_or(f.abi_tag = 'none') AS pure,
                  jsonb_object_agg(f.platform_tag, f.pyver) FILTER (WHERE f.abi_tag = 'abi3')
                      AS abi3_from
           FROM (SELECT ff.package, ff.version, ff.abi_tag, ff.platform_tag,
                        min(tag_pyver(ff.python_tag)) AS pyver
                 FROM files ff
                 WHERE ff.abi_tag IN ('none', 'abi3')
                 GROUP BY 1, 2, 3, 4) f
           GROUP BY f.package, f.version) cov
       ON cov.package = v.package AND cov.version = v.version
CROSS JOIN (SELECT x.target, x.platform_tag, x.py_major, x.py_minor,
                   coalesce(bit_or(x.bit) OVER w, 0) AS lower_bits,
                   coalesce(bool_or(x.bit IS NULL) OVER w, false) AS lower_other
            FROM (SELECT t.*, python_bit(t.py_major, t.py_minor) AS bit
                  FROM targets t WHERE t.active) x
            WINDOW w AS (ORDER BY x.py_major, x.py_minor, x.platform_tag
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) a
WHERE NOT v.deleted AND v.skip_reason IS NULL
  AND NOT p.deleted AND p.skip_reason IS NULL
  AND NOT python_excludes(v.python_excluded, a.py_major, a.py_minor)
  AND (
        (NOT a.lower_other AND a.lower_bits & ~coalesce(v.python_excluded, 0) = 0)
        OR NOT (coalesce(fin.targets, '{}') <@ ARRAY[a.target])
        OR NOT (coalesce(sk.targets, '{}') <@ ARRAY[a.target])
      )
  AND NOT (a.target = ANY (coalesce(fin.targets, '{}')))
  AND NOT (a.target = ANY (coalesce(sk.targets, '{}')))
  AND NOT coalesce(cov.pure, false)
  AND NOT coalesce((cov.abi3_from ->> a.platform_tag)::integer <= a.py_major * 100 + a.py_minor,
                   false);

-- 0005's full refresh, per target.
CREATE OR REPLACE FUNCTION refresh_queue_all() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_nestloop = off AS $$
DECLARE
    added integer;
BEGIN
    WITH w AS MATERIALIZED (
        SELECT package, version, target, released FROM wanted_builds
    ), gone AS (
        DELETE FROM queue q
        WHERE q.build_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM w
                          WHERE w.package = q.package AND w.version = q.version
                            AND w.target = q.target)
    )
    INSERT INTO queue (package, version, target, released)
    SELECT w.package, w.version, w.target, w.released FROM w
    WHERE NOT EXISTS (SELECT 1 FROM queue q
                      WHERE q.package = w.package AND q.version = w.version
                        AND q.target = w.target)
    ON CONFLICT DO NOTHING;  -- a sync or a finish may queue the same row meanwhile
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END $$;

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
                            AND w.target = q.target);
        INSERT INTO queue (package, version, target, released)
        SELECT w.package, w.version, w.target, w.released FROM wanted_builds w
        WHERE w.package = p_package
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM queue q
        WHERE q.package = p_package AND q.version = p_version AND q.build_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM wanted_builds w
                          WHERE w.package = q.package AND w.version = q.version
                            AND w.target = q.target);
        INSERT INTO queue (package, version, target, released)
        SELECT w.package, w.version, w.target, w.released FROM wanted_builds w
        WHERE w.package = p_package AND w.version = p_version
        ON CONFLICT DO NOTHING;
    END IF;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END $$;

-- A builder (one interpreter on one machine) announces itself; a new target
-- joins the active ones and the queue is filled for it.
CREATE OR REPLACE FUNCTION register_builder(p_name text, p_abi_tag text, p_platform_tag text,
                                            p_python text, p_os_release text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    pyver integer := tag_pyver(p_abi_tag);
    tgt text := p_abi_tag || '-' || p_platform_tag;
    bid integer;
BEGIN
    IF pyver IS NULL OR p_abi_tag !~ '^[a-z]+\d+[a-z]*$' THEN
        RAISE EXCEPTION 'invalid ABI tag %', p_abi_tag;
    END IF;
    IF p_platform_tag IS NULL OR p_platform_tag !~ '^[a-z0-9_]+$' THEN
        RAISE EXCEPTION 'invalid platform tag %', p_platform_tag;
    END IF;
    INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)
    VALUES (tgt, p_abi_tag, p_platform_tag, pyver / 100, pyver % 100)
    ON CONFLICT (target) DO NOTHING;
    IF FOUND THEN
        PERFORM refresh_queue();
    END IF;
    INSERT INTO builders (name, abi_tag, platform_tag, target, python, os_release)
    VALUES (p_name, p_abi_tag, p_platform_tag, tgt, p_python, p_os_release)
    ON CONFLICT (name, target) DO UPDATE
        SET python = EXCLUDED.python, os_release = EXCLUDED.os_release, last_seen = now()
    RETURNING builder_id INTO bid;
    RETURN bid;
END $$;

-- 0007's sweep, reporting targets.
DROP FUNCTION expire_leases();
CREATE FUNCTION expire_leases()
RETURNS TABLE (build_id bigint, package text, version text, target text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    pkgs text[];
    vers text[];
    tags text[];
BEGIN
    WITH expired AS (
        SELECT q.package, q.version, q.target, q.build_id FROM queue q
        JOIN builds b ON b.build_id = q.build_id
        WHERE q.build_id IS NOT NULL AND q.lease_expires < now()
        FOR UPDATE OF q, b SKIP LOCKED
    ), released AS (
        UPDATE queue q SET build_id = NULL, lease_expires = NULL
        FROM expired e
        WHERE q.package = e.package AND q.version = e.version AND q.target = e.target
        RETURNING e.build_id, e.package, e.version, e.target
    ), abandoned AS (
        UPDATE builds b SET status = 'abandoned', finished_at = now()
        FROM released r WHERE b.build_id = r.build_id AND b.status = 'building'
    )
    SELECT array_agg(r.build_id), array_agg(r.package), array_agg(r.version),
           array_agg(r.target)
    INTO ids, pkgs, vers, tags
    FROM released r;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM mark_dirty(ARRAY(SELECT DISTINCT unnest(pkgs)));
    RETURN QUERY SELECT * FROM unnest(ids, pkgs, vers, tags);
END $$;
REVOKE EXECUTE ON FUNCTION expire_leases() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION expire_leases() TO piwheels_master;

-- 0007's claim, for the builder's target; the row names the target.
DROP FUNCTION claim_build(integer, integer);
CREATE FUNCTION claim_build(p_builder_id integer, p_lease_seconds integer DEFAULT 300)
RETURNS TABLE (build_id bigint, package text, version text, target text,
               sdist_filename text, sdist_url text, sdist_sha256 text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    my_target text;
    q record;
    s record;
    new_id bigint;
BEGIN
    UPDATE builders SET last_seen = now() WHERE builders.builder_id = p_builder_id
    RETURNING builders.target INTO my_target;
    IF my_target IS NULL THEN
        RAISE EXCEPTION 'unknown builder %', p_builder_id;
    END IF;
    PERFORM expire_leases();
    LOOP
        SELECT qq.package, qq.version, qq.target INTO q FROM queue qq
        WHERE qq.target = my_target AND qq.build_id IS NULL
          AND (qq.not_before IS NULL OR qq.not_before <= now())
        ORDER BY qq.priority DESC, qq.released DESC
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        SELECT f.filename, f.url, f.sha256 INTO s FROM upstream_files f
        WHERE f.package = q.package AND f.version = q.version AND f.kind = 'sdist'
        ORDER BY (f.filename LIKE '%.tar.gz') DESC, f.filename
        LIMIT 1;
        EXIT WHEN FOUND;
        -- No sdist any more (removed upstream since it was queued).
        UPDATE versions v SET skip_reason = 'binary-only'
        WHERE v.package = q.package AND v.version = q.version AND v.skip_reason IS NULL;
        DELETE FROM queue qq
        WHERE qq.package = q.package AND qq.version = q.version AND qq.build_id IS NULL;
    END LOOP;
    INSERT INTO builds (package, version, target, builder_id)
    VALUES (q.package, q.version, q.target, p_builder_id)
    RETURNING builds.build_id INTO new_id;
    UPDATE queue qq SET build_id = new_id,
        lease_expires = now() + make_interval(secs => p_lease_seconds)
    WHERE qq.package = q.package AND qq.version = q.version AND qq.target = q.target;
    build_id := new_id;
    package := q.package;
    version := q.version;
    target := q.target;
    sdist_filename := s.filename;
    sdist_url := s.url;
    sdist_sha256 := s.sha256;
    RETURN NEXT;
END $$;
REVOKE EXECUTE ON FUNCTION claim_build(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_build(integer, integer) TO piwheels_master, piwheels_builder;

-- 0008's finish_build, per target, keeping a file's alias_note.
CREATE OR REPLACE FUNCTION finish_build(p_build_id bigint, p_status text, p_duration double precision,
                             p_log bytea, p_log_size bigint, p_log_truncated boolean,
                             p_files jsonb DEFAULT '[]'::jsonb)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    b builds;
    q queue;
    f jsonb;
    d jsonb;
    old files;
    n_infra integer;
    lim integer;
    delay double precision;
BEGIN
    IF p_status NOT IN ('success', 'failed', 'timeout', 'out-of-memory',
                        'missing-build-dependency', 'infrastructure', 'not-for-python') THEN
        RAISE EXCEPTION 'invalid build status %', p_status;
    END IF;
    SELECT * INTO b FROM builds WHERE builds.build_id = p_build_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown build %', p_build_id;
    END IF;
    -- Finishes of one version (on several targets) take turns: each refreshes
    -- the version's queue rows, and two at once deadlocked on each other's rows.
    -- FOR NO KEY UPDATE does not block the FOR KEY SHARE of claims and sync.
    PERFORM 1 FROM versions v WHERE v.package = b.package AND v.version = b.version
    FOR NO KEY UPDATE;
    SELECT * INTO q FROM queue WHERE queue.build_id = p_build_id FOR UPDATE;
    IF NOT FOUND OR b.status <> 'building' THEN
        UPDATE builds SET status = 'abandoned', finished_at = now(), duration = p_duration
        WHERE builds.build_id = p_build_id AND builds.status = 'building';
        RETURN false;
    END IF;
    UPDATE builds SET status = p_status, finished_at = now(), duration = p_duration
    WHERE builds.build_id = p_build_id;
    IF p_log IS NOT NULL THEN
        INSERT INTO build_logs (build_id, log, size, truncated)
        VALUES (p_build_id, p_log, coalesce(p_log_size, length(p_log)),
                coalesce(p_log_truncated, false));
    END IF;
    IF p_status = 'success' THEN
        FOR f IN SELECT * FROM jsonb_array_elements(p_files) LOOP
            SELECT * INTO old FROM files WHERE filename = f->>'filename';
            IF FOUND THEN
                IF old.sha256 = f->>'sha256' AND old.alias_of IS NOT DISTINCT FROM f->>'alias_of' THEN
                    CONTINUE;
                ELSIF old.alias_of IS NOT NULL AND f->>'alias_of' IS NULL THEN
                    DELETE FROM files WHERE filename = old.filename;  -- a real wheel beats an alias
                ELSIF old.alias_of IS NULL AND f->>'alias_of' IS NOT NULL THEN
                    CONTINUE;  -- never alias over a real wheel
                ELSE
                    RAISE EXCEPTION 'file % is already recorded with other contents', old.filename;
                END IF;
            END IF;
            INSERT INTO files (filename, build_id, package, version, python_tag, abi_tag,
                               platform_tag, size, sha256, requires_python, metadata_sha256,
                               alias_of, alias_note)
            VALUES (f->>'filename', p_build_id, b.package, b.version, f->>'python_tag',
                    f->>'abi_tag', f->>'platform_tag', (f->>'size')::bigint, f->>'sha256',
                    f->>'requires_python', f->>'metadata_sha256', f->>'alias_of',
                    f->>'alias_note');
            FOR d IN SELECT * FROM jsonb_array_elements(coalesce(f->'dependencies', '[]')) LOOP
                INSERT INTO dependencies (filename, tool, dependency)
                VALUES (f->>'filename', d->>'tool', d->>'dependency')
                ON CONFLICT DO NOTHING;
            END LOOP;
        END LOOP;
    END IF;
    DELETE FROM queue WHERE queue.build_id = p_build_id;
    IF p_status = 'infrastructure' THEN
        SELECT count(*) INTO n_infra FROM builds
        WHERE builds.package = b.package AND builds.version = b.version
          AND builds.target = b.target AND builds.status = 'infrastructure';
        SELECT value::integer INTO lim FROM settings WHERE key = 'retry_limit';
        SELECT value::double precision INTO delay FROM settings WHERE key = 'retry_delay';
        IF n_infra < coalesce(lim, 5) THEN
            INSERT INTO queue (package, version, target, released, priority, attempts, not_before)
            VALUES (b.package, b.version, b.target, q.released, q.priority, n_infra,
                    now() + make_interval(secs => least(coalesce(delay, 60) * 2 ^ (n_infra - 1),
                                                        6 * 3600)));
        ELSE
            INSERT INTO target_skips (package, version, target, reason, note)
            VALUES (b.package, b.version, b.target, 'too-many-failures',
                    n_infra || ' infrastructure failures')
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    PERFORM refresh_queue(b.package, b.version);
    -- DO UPDATE (not DO NOTHING) locks the row, so an index writer that is
    -- clearing it either waits for this build or sees it next run.
    INSERT INTO index_dirty (package) VALUES (b.package)
    ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since;
    RETURN true;
END $$;

-- The targets an operator names: a target ("cp311-linux_armv7l"), an ABI
-- ("cp311": its targets on every platform) or a platform ("linux_armv7l":
-- every ABI on it). Empty when nothing matches.
CREATE FUNCTION targets_named(p_name text) RETURNS text[]
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT coalesce(array_agg(t.target ORDER BY t.py_major, t.py_minor, t.platform_tag), '{}')
    FROM targets t
    WHERE p_name IN (t.target, t.abi_tag, t.platform_tag)
$$;
REVOKE EXECUTE ON FUNCTION targets_named(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION targets_named(text) TO piwheels_master, piwheels_web;

-- 0006's operator skips, per target (p_target: a target, an ABI or a
-- platform, as targets_named reads it). A name that matches no target raises.
DROP FUNCTION skip_version(text, text, text, text);
CREATE FUNCTION skip_version(p_package text, p_version text DEFAULT NULL,
                             p_target text DEFAULT NULL, p_note text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    tgts text[];
BEGIN
    IF p_target IS NOT NULL THEN
        tgts := targets_named(p_target);
        IF cardinality(tgts) = 0 THEN
            RAISE EXCEPTION 'no build target is named %', p_target;
        END IF;
        INSERT INTO target_skips (package, version, target, reason, note)
        SELECT p_package, p_version, t, 'admin', p_note FROM unnest(tgts) AS t
        ON CONFLICT DO NOTHING;
    ELSIF p_version IS NOT NULL THEN
        UPDATE versions SET skip_reason = 'admin', skip_note = p_note
        WHERE package = p_package AND version = p_version AND skip_reason IS NULL;
    ELSE
        UPDATE packages SET skip_reason = coalesce(nullif(p_note, ''), 'admin')
        WHERE package = p_package AND skip_reason IS NULL;
    END IF;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM refresh_queue(p_package, p_version);
    PERFORM mark_dirty(ARRAY[p_package]);
    RETURN true;
END $$;
REVOKE EXECUTE ON FUNCTION skip_version(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION skip_version(text, text, text, text) TO piwheels_master;

DROP FUNCTION unskip_version(text, text, text);
CREATE FUNCTION unskip_version(p_package text, p_version text DEFAULT NULL,
                               p_target text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_target IS NOT NULL THEN
        DELETE FROM target_skips
        WHERE package = p_package AND version = p_version
          AND target = ANY (targets_named(p_target));
    ELSIF p_version IS NOT NULL THEN
        UPDATE versions SET skip_reason = NULL, skip_note = NULL
        WHERE package = p_package AND version = p_version AND skip_reason = 'admin';
    ELSE
        UPDATE packages SET skip_reason = NULL
        WHERE package = p_package AND skip_reason IS NOT NULL;
    END IF;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM refresh_queue(p_package, p_version);
    PERFORM mark_dirty(ARRAY[p_package]);
    RETURN true;
END $$;
REVOKE EXECUTE ON FUNCTION unskip_version(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unskip_version(text, text, text) TO piwheels_master;

-- 0006's requeue, per target (p_target as in skip_version; NULL: every
-- target). queued lists the targets now queued (or building).
DROP FUNCTION requeue_version(text, text, text, integer);
CREATE FUNCTION requeue_version(p_package text, p_version text, p_target text DEFAULT NULL,
                                p_priority integer DEFAULT 0)
RETURNS TABLE (forgotten integer, added integer, reprioritised integer, queued text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
    tgts text[];
BEGIN
    IF p_target IS NOT NULL THEN
        tgts := targets_named(p_target);
        IF cardinality(tgts) = 0 THEN
            RAISE EXCEPTION 'no build target is named %', p_target;
        END IF;
    END IF;
    DELETE FROM builds b
    WHERE b.package = p_package AND b.version = p_version
      AND (tgts IS NULL OR b.target = ANY (tgts))
      AND b.status NOT IN ('success', 'building')
      AND NOT EXISTS (SELECT 1 FROM files f WHERE f.build_id = b.build_id);
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    DELETE FROM target_skips s
    WHERE s.package = p_package AND s.version = p_version
      AND (tgts IS NULL OR s.target = ANY (tgts));
    GET DIAGNOSTICS n = ROW_COUNT;
    forgotten := forgotten + n;
    UPDATE versions v SET skip_reason = NULL, skip_note = NULL
    WHERE v.package = p_package AND v.version = p_version
      AND v.skip_reason IN ('admin', 'too-many-failures');
    GET DIAGNOSTICS n = ROW_COUNT;
    forgotten := forgotten + n;
    DELETE FROM queue q
    WHERE q.package = p_package AND q.version = p_version
      AND q.build_id IS NULL AND q.not_before > now()
      AND (tgts IS NULL OR q.target = ANY (tgts));
    GET DIAGNOSTICS n = ROW_COUNT;
    forgotten := forgotten + n;
    added := refresh_queue(p_package, p_version);
    reprioritised := 0;
    IF coalesce(p_priority, 0) <> 0 THEN
        UPDATE queue q SET priority = p_priority
        WHERE q.package = p_package AND q.version = p_version
          AND (tgts IS NULL OR q.target = ANY (tgts)) AND q.priority <> p_priority;
        GET DIAGNOSTICS reprioritised = ROW_COUNT;
    END IF;
    SELECT coalesce(array_agg(q.target ORDER BY q.target), '{}') INTO queued
    FROM queue q
    WHERE q.package = p_package AND q.version = p_version
      AND (tgts IS NULL OR q.target = ANY (tgts));
    IF forgotten > 0 THEN
        PERFORM mark_dirty(ARRAY[p_package]);
    END IF;
    RETURN NEXT;
END $$;
REVOKE EXECUTE ON FUNCTION requeue_version(text, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION requeue_version(text, text, text, integer) TO piwheels_master;

-- 0008's one-shot Requires-Python fill, reading targets.
CREATE OR REPLACE FUNCTION fill_requires_python(p_packages text[], p_versions text[],
                                                p_specs text[], p_masks bigint[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
    active_bits bigint;
    dirty text[];
    pkgs text[];
    vers text[];
BEGIN
    SELECT coalesce(bit_or(python_bit(t.py_major, t.py_minor)), 0) INTO active_bits
    FROM targets t WHERE t.active;
    WITH u AS (
        UPDATE versions v SET requires_python = x.spec, python_excluded = x.mask
        FROM unnest(p_packages, p_versions, p_specs, p_masks) AS x(package, version, spec, mask)
        WHERE v.package = x.package AND v.version = x.version AND v.python_excluded IS NULL
        RETURNING v.package, v.version, v.python_excluded
    ), r AS (
        SELECT u.package, u.version FROM u
        WHERE u.python_excluded & active_bits <> 0
          AND EXISTS (SELECT 1 FROM queue q JOIN targets t ON t.target = q.target
                      WHERE q.package = u.package AND q.version = u.version
                        AND q.build_id IS NULL
                        AND python_excludes(u.python_excluded, t.py_major, t.py_minor))
    )
    SELECT (SELECT count(*) FROM u),
           ARRAY(SELECT DISTINCT u.package FROM u WHERE u.python_excluded & active_bits <> 0),
           ARRAY(SELECT r.package FROM r ORDER BY r.package, r.version),
           ARRAY(SELECT r.version FROM r ORDER BY r.package, r.version)
    INTO n, dirty, pkgs, vers;
    PERFORM refresh_queue(x.package, x.version) FROM unnest(pkgs, vers) AS x(package, version);
    IF cardinality(dirty) > 0 THEN
        PERFORM mark_dirty(dirty);
    END IF;
    RETURN n;
END $$;

-- 0008's farm_stats, per target: builders, the queue and the versions
-- Requires-Python rules out are listed per target ('target', with its 'abi'
-- and 'platform'), ordered numerically; plus versions built per target.
CREATE OR REPLACE FUNCTION farm_stats(p_detail boolean DEFAULT true) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
SELECT jsonb_build_object(
    'packages', (SELECT jsonb_build_object(
                     'total', count(*),
                     'deleted', count(*) FILTER (WHERE deleted),
                     'needs_sync', count(*) FILTER (WHERE needs_sync))
                 FROM packages),
    'versions', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                     'skip_reason', v.skip_reason, 'count', v.n)
                                 ORDER BY v.skip_reason NULLS FIRST), '[]')
                 FROM (SELECT skip_reason, count(*) AS n FROM versions GROUP BY 1) v),
    -- a version only ruled out by Requires-Python (not-for-python) was not attempted
    'attempted', (SELECT count(*) FROM (SELECT DISTINCT b.package, b.version FROM builds b
                                        WHERE p_detail AND is_final_status(b.status)
                                          AND b.status <> 'not-for-python') a),
    'files', (SELECT jsonb_build_object(
                  'count', count(*),
                  'wheels', count(*) FILTER (WHERE alias_of IS NULL),
                  'bytes', coalesce(sum(size) FILTER (WHERE alias_of IS NULL), 0),
                  'packages', count(DISTINCT package) FILTER (WHERE p_detail),
                  'versions', count(DISTINCT (package, version)) FILTER (WHERE p_detail))
              FROM files),
    'builds', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                   'status', b.status, 'count', b.n, 'seconds', b.t)
                               ORDER BY b.status), '[]')
               FROM (SELECT status, count(*) AS n, coalesce(sum(duration), 0) AS t
                     FROM builds GROUP BY status) b),
    'builders', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                     'name', x.name, 'target', x.target, 'abi', x.abi_tag,
                                     'platform', x.platform_tag, 'last_seen', x.last_seen,
                                     'builds', x.n, 'successes', x.ok, 'seconds', x.t)
                                 ORDER BY x.name, x.target), '[]')
                 FROM (SELECT bu.name, bu.target, bu.abi_tag, bu.platform_tag, bu.last_seen,
                              count(b.build_id) AS n,
                              count(b.build_id) FILTER (WHERE b.status = 'success') AS ok,
                              coalesce(sum(b.duration), 0) AS t
                       FROM builders bu LEFT JOIN builds b ON b.builder_id = bu.builder_id
                       GROUP BY bu.builder_id) x),
    'queue', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                  'target', q.target, 'abi', q.abi_tag,
                                  'platform', q.platform_tag, 'active', q.active,
                                  'queued', q.queued, 'ready', q.ready, 'building', q.building,
                                  'waiting_retry', q.waiting)
                              ORDER BY q.py_major, q.py_minor, q.platform_tag), '[]')
              FROM (SELECT t.target, t.abi_tag, t.platform_tag, t.active, t.py_major,
                           t.py_minor,
                           count(q.package) AS queued,
                           count(q.package) FILTER (WHERE q.build_id IS NULL
                               AND (q.not_before IS NULL OR q.not_before <= now())) AS ready,
                           count(q.build_id) AS building,
                           count(q.package) FILTER (WHERE q.build_id IS NULL
                               AND q.not_before > now()) AS waiting
                    FROM targets t LEFT JOIN queue q ON q.target = t.target
                    GROUP BY t.target) q),
    'targets', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                    'target', r.target, 'abi', r.abi_tag,
                                    'platform', r.platform_tag, 'active', r.active,
                                    'attempted', r.attempted, 'built', r.built)
                                ORDER BY r.py_major, r.py_minor, r.platform_tag), '[]')
                FROM (SELECT t.target, t.abi_tag, t.platform_tag, t.active, t.py_major,
                             t.py_minor,
                             count(DISTINCT (b.package, b.version))
                                 FILTER (WHERE is_final_status(b.status)
                                           AND b.status <> 'not-for-python') AS attempted,
                             count(DISTINCT (b.package, b.version))
                                 FILTER (WHERE b.status = 'success') AS built
                      FROM targets t LEFT JOIN builds b ON p_detail AND b.target = t.target
                      GROUP BY t.target) r),
    'not_for_python', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                           'target', r.target, 'abi', r.abi_tag,
                                           'platform', r.platform_tag, 'versions', r.n)
                                       ORDER BY r.py_major, r.py_minor, r.platform_tag), '[]')
                       FROM (SELECT t.target, t.abi_tag, t.platform_tag, t.py_major, t.py_minor,
                                    coalesce(sum(m.n), 0) AS n
                             FROM targets t
                             LEFT JOIN (SELECT python_excluded AS mask, count(*) AS n
                                        FROM versions
                                        WHERE python_excluded <> 0 AND NOT deleted
                                          AND skip_reason IS NULL
                                        GROUP BY 1) m
                                    ON python_excludes(m.mask, t.py_major, t.py_minor)
                             WHERE t.active
                             GROUP BY t.target) r),
    'requires_python_pending', (SELECT count(*) FROM versions WHERE python_excluded IS NULL),
    'index_dirty', (SELECT count(*) FROM index_dirty)
)
$$;
