-- 0008: Requires-Python honoured before building.
--
-- A version whose sdist's Requires-Python rules out a build target's Python is
-- not queued for it. SQL cannot parse PEP 440 specifiers, so sync does
-- (piwheels_build/requirespython.py) and stores, per version, the sdist's
-- specifier and a bit mask of the Python 3 minors it excludes (bit N: no
-- 3.N.x satisfies it). The queue's rules read the mask only: the claim is
-- unchanged (the rows are simply never queued), and a target's Python is all
-- the rule needs, whatever else a target becomes. NULL: not evaluated yet
-- (versions synced before this migration, until the next sync run fills them:
-- sync/requirespython.py); it is read as "no constraint".
--
-- The primary ABI (the lowest active one, where a version is built first)
-- becomes per version: the lowest active ABI its Requires-Python admits, so a
-- release for ">=3.9" starts on cp39 when cp38 is the lowest.
--
-- A builder that finds the exclusion only in the sdist's PKG-INFO (the
-- upstream gave none) records the new final status 'not-for-python': not a
-- failure, never retried, and, like any final attempt, it queues the others.

ALTER TABLE versions ADD COLUMN requires_python text,
                     ADD COLUMN python_excluded bigint;
-- What is left to evaluate (the next sync run walks it); empty once filled,
-- since sync writes every version it writes with a mask.
CREATE INDEX versions_python_pending ON versions (package, version)
    WHERE python_excluded IS NULL;

-- The mask's bit for Python major.minor; NULL for a Python it cannot hold
-- (not 3.x, or 3.63 and later): such a Python is never excluded.
CREATE FUNCTION python_bit(p_major integer, p_minor integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_major = 3 AND p_minor BETWEEN 0 AND 62
                THEN 1::bigint << p_minor END
$$;

-- Whether a version's mask rules out Python major.minor.
CREATE FUNCTION python_excludes(p_mask bigint, p_major integer, p_minor integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p_mask & python_bit(p_major, p_minor) <> 0, false)
$$;

ALTER TABLE builds DROP CONSTRAINT builds_status_check;
ALTER TABLE builds ADD CONSTRAINT builds_status_check CHECK (status IN
    ('building', 'success', 'failed', 'timeout', 'out-of-memory',
     'missing-build-dependency', 'infrastructure', 'abandoned', 'not-for-python'));

CREATE OR REPLACE FUNCTION is_final_status(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status IN ('success', 'failed', 'timeout', 'out-of-memory', 'missing-build-dependency',
                      'not-for-python')
$$;

-- 0004's view, plus: no row for an ABI the version's Requires-Python excludes;
-- the primary ABI per version. Each active ABI carries the bits of the active
-- ABIs ordered before it (lower_bits) and whether one of those cannot be
-- excluded (lower_other); it is the version's primary when every ABI before
-- it is excluded. Bit arithmetic per row, no subplan per version.
CREATE OR REPLACE VIEW wanted_builds AS
SELECT v.package, v.version, a.abi_tag, v.released
FROM versions v
JOIN packages p ON p.package = v.package
LEFT JOIN (SELECT b.package, b.version, array_agg(DISTINCT b.abi_tag) AS abis
           FROM builds b
           WHERE b.status IN ('success', 'failed', 'timeout', 'out-of-memory',
                              'missing-build-dependency', 'not-for-python')
           GROUP BY b.package, b.version) fin
       ON fin.package = v.package AND fin.version = v.version
LEFT JOIN (SELECT s.package, s.version, array_agg(s.abi_tag) AS abis
           FROM abi_skips s
           GROUP BY s.package, s.version) sk
       ON sk.package = v.package AND sk.version = v.version
LEFT JOIN (SELECT f.package, f.version,
                  bool_or(f.abi_tag = 'none') AS pure,
                  min(tag_pyver(f.python_tag)) FILTER (WHERE f.abi_tag = 'abi3') AS abi3_from
           FROM files f
           WHERE f.abi_tag IN ('none', 'abi3')
           GROUP BY f.package, f.version) cov
       ON cov.package = v.package AND cov.version = v.version
CROSS JOIN (SELECT x.abi_tag, x.py_major, x.py_minor,
                   coalesce(bit_or(x.bit) OVER w, 0) AS lower_bits,
                   coalesce(bool_or(x.bit IS NULL) OVER w, false) AS lower_other
            FROM (SELECT ab.*, python_bit(ab.py_major, ab.py_minor) AS bit
                  FROM abis ab WHERE ab.active) x
            WINDOW w AS (ORDER BY x.py_major, x.py_minor, x.abi_tag
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) a
WHERE NOT v.deleted AND v.skip_reason IS NULL
  AND NOT p.deleted AND p.skip_reason IS NULL
  AND NOT python_excludes(v.python_excluded, a.py_major, a.py_minor)
  AND (
        (NOT a.lower_other AND a.lower_bits & ~coalesce(v.python_excluded, 0) = 0)
        OR NOT (coalesce(fin.abis, '{}') <@ ARRAY[a.abi_tag])
        OR NOT (coalesce(sk.abis, '{}') <@ ARRAY[a.abi_tag])
      )
  AND NOT (a.abi_tag = ANY (coalesce(fin.abis, '{}')))
  AND NOT (a.abi_tag = ANY (coalesce(sk.abis, '{}')))
  AND NOT coalesce(cov.pure, false)
  AND NOT coalesce(cov.abi3_from <= a.py_major * 100 + a.py_minor, false);

-- 0004's finish_build, accepting 'not-for-python'.
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
    -- Finishes of one version (on several ABIs) take turns: each refreshes the
    -- version's queue rows, and two at once deadlocked on each other's rows.
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
                               alias_of)
            VALUES (f->>'filename', p_build_id, b.package, b.version, f->>'python_tag',
                    f->>'abi_tag', f->>'platform_tag', (f->>'size')::bigint, f->>'sha256',
                    f->>'requires_python', f->>'metadata_sha256', f->>'alias_of');
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
          AND builds.abi_tag = b.abi_tag AND builds.status = 'infrastructure';
        SELECT value::integer INTO lim FROM settings WHERE key = 'retry_limit';
        SELECT value::double precision INTO delay FROM settings WHERE key = 'retry_delay';
        IF n_infra < coalesce(lim, 5) THEN
            INSERT INTO queue (package, version, abi_tag, released, priority, attempts, not_before)
            VALUES (b.package, b.version, b.abi_tag, q.released, q.priority, n_infra,
                    now() + make_interval(secs => least(coalesce(delay, 60) * 2 ^ (n_infra - 1),
                                                        6 * 3600)));
        ELSE
            INSERT INTO abi_skips (package, version, abi_tag, reason, note)
            VALUES (b.package, b.version, b.abi_tag, 'too-many-failures',
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

-- 0006's write_versions, with each version's Requires-Python and mask.
DROP FUNCTION write_versions(text[], text[], timestamptz[], boolean[], text[], boolean[],
                             boolean[], text[]);
CREATE FUNCTION write_versions(p_packages text[], p_versions text[], p_released timestamptz[],
                               p_yanked boolean[], p_yanked_reasons text[],
                               p_prerelease boolean[], p_deleted boolean[],
                               p_skip_reasons text[], p_requires_python text[],
                               p_python_excluded bigint[])
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO versions (package, version, released, yanked, yanked_reason, prerelease,
                          deleted, skip_reason, requires_python, python_excluded)
    SELECT * FROM unnest(p_packages, p_versions, p_released, p_yanked, p_yanked_reasons,
                         p_prerelease, p_deleted, p_skip_reasons, p_requires_python,
                         p_python_excluded)
    ON CONFLICT (package, version) DO UPDATE SET released = EXCLUDED.released,
        yanked = EXCLUDED.yanked, yanked_reason = EXCLUDED.yanked_reason,
        prerelease = EXCLUDED.prerelease, deleted = EXCLUDED.deleted,
        skip_reason = EXCLUDED.skip_reason, requires_python = EXCLUDED.requires_python,
        python_excluded = EXCLUDED.python_excluded
$$;
REVOKE EXECUTE ON FUNCTION write_versions(text[], text[], timestamptz[], boolean[], text[],
                                          boolean[], boolean[], text[], text[], bigint[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION write_versions(text[], text[], timestamptz[], boolean[], text[],
                                         boolean[], boolean[], text[], text[], bigint[])
    TO piwheels_master;

-- The one-shot fill for versions synced before this migration: a batch of
-- (package, version, specifier, mask) computed by sync/requirespython.py.
-- Only rows still NULL are written (a sync that wrote the version meanwhile
-- knows better). The packages of versions whose mask rules out an active ABI
-- are marked for the index writer (their pages say so). The queue changes
-- only where an unclaimed row is for an ABI now ruled out: that row goes and,
-- if it was the version's first build, the next admitted ABI becomes primary.
-- Anywhere else the ruled-out ABIs were attempted, skipped or covered
-- already, and the others queued by those results, so nothing changes: only
-- those versions are refreshed (the refresh is most of a batch's cost).
-- Returns the versions written.
CREATE FUNCTION fill_requires_python(p_packages text[], p_versions text[], p_specs text[],
                                     p_masks bigint[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
    active_bits bigint;
    dirty text[];
    pkgs text[];
    vers text[];
BEGIN
    SELECT coalesce(bit_or(python_bit(a.py_major, a.py_minor)), 0) INTO active_bits
    FROM abis a WHERE a.active;
    WITH u AS (
        UPDATE versions v SET requires_python = x.spec, python_excluded = x.mask
        FROM unnest(p_packages, p_versions, p_specs, p_masks) AS x(package, version, spec, mask)
        WHERE v.package = x.package AND v.version = x.version AND v.python_excluded IS NULL
        RETURNING v.package, v.version, v.python_excluded
    ), r AS (
        SELECT u.package, u.version FROM u
        WHERE u.python_excluded & active_bits <> 0
          AND EXISTS (SELECT 1 FROM queue q JOIN abis a ON a.abi_tag = q.abi_tag
                      WHERE q.package = u.package AND q.version = u.version
                        AND q.build_id IS NULL
                        AND python_excludes(u.python_excluded, a.py_major, a.py_minor))
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
REVOKE EXECUTE ON FUNCTION fill_requires_python(text[], text[], text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fill_requires_python(text[], text[], text[], bigint[])
    TO piwheels_master;

-- 0006's farm_stats, plus per active ABI the versions its Requires-Python
-- rules out (not queued, not failed) and the versions not evaluated yet;
-- a not-for-python build does not count as an attempt (the stats page's
-- success rate is of versions attempted).
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
                                     'name', x.name, 'abi', x.abi_tag,
                                     'platform', x.platform_tag, 'last_seen', x.last_seen,
                                     'builds', x.n, 'successes', x.ok, 'seconds', x.t)
                                 ORDER BY x.name, x.abi_tag), '[]')
                 FROM (SELECT bu.name, bu.abi_tag, bu.platform_tag, bu.last_seen,
                              count(b.build_id) AS n,
                              count(b.build_id) FILTER (WHERE b.status = 'success') AS ok,
                              coalesce(sum(b.duration), 0) AS t
                       FROM builders bu LEFT JOIN builds b ON b.builder_id = bu.builder_id
                       GROUP BY bu.builder_id) x),
    'queue', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                  'abi', q.abi_tag, 'active', q.active, 'queued', q.queued,
                                  'ready', q.ready, 'building', q.building,
                                  'waiting_retry', q.waiting)
                              ORDER BY q.py_major, q.py_minor, q.abi_tag), '[]')
              FROM (SELECT a.abi_tag, a.active, a.py_major, a.py_minor,
                           count(q.package) AS queued,
                           count(q.package) FILTER (WHERE q.build_id IS NULL
                               AND (q.not_before IS NULL OR q.not_before <= now())) AS ready,
                           count(q.build_id) AS building,
                           count(q.package) FILTER (WHERE q.build_id IS NULL
                               AND q.not_before > now()) AS waiting
                    FROM abis a LEFT JOIN queue q ON q.abi_tag = a.abi_tag
                    GROUP BY a.abi_tag) q),
    'not_for_python', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                           'abi', r.abi_tag, 'versions', r.n)
                                       ORDER BY r.py_major, r.py_minor, r.abi_tag), '[]')
                       FROM (SELECT a.abi_tag, a.py_major, a.py_minor,
                                    coalesce(sum(m.n), 0) AS n
                             FROM abis a
                             LEFT JOIN (SELECT python_excluded AS mask, count(*) AS n
                                        FROM versions
                                        WHERE python_excluded <> 0 AND NOT deleted
                                          AND skip_reason IS NULL
                                        GROUP BY 1) m
                                    ON python_excludes(m.mask, a.py_major, a.py_minor)
                             WHERE a.active
                             GROUP BY a.abi_tag) r),
    'requires_python_pending', (SELECT count(*) FROM versions WHERE python_excluded IS NULL),
    'index_dirty', (SELECT count(*) FROM index_dirty)
)
$$;
