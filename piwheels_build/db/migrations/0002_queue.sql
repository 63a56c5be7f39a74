-- 0002: the queue rules, as set-based SQL so they stay fast at PyPI's size.
--
-- A version is first built for the primary ABI (the lowest active one, so an
-- abi3 wheel from it covers the most). A pure wheel (abi "none") covers every
-- ABI; an abi3 wheel for cp3X covers cp3Y for Y >= X; any other result, a
-- failure included, queues the version for every other active ABI.

-- (major * 100 + minor) of an interpreter or ABI tag: cp39 -> 309, cp311 -> 311.
CREATE FUNCTION tag_pyver(tag text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT substring(tag FROM '^[a-z]+(\d)')::integer * 100
         + substring(tag FROM '^[a-z]+\d(\d+)')::integer
$$;

-- Statuses after which a (version, ABI) is not attempted again by itself.
CREATE FUNCTION is_final_status(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status IN ('success', 'failed', 'timeout', 'out-of-memory', 'missing-build-dependency')
$$;

CREATE VIEW wanted_builds AS
SELECT v.package, v.version, a.abi_tag, v.released
FROM versions v
JOIN packages p ON p.package = v.package
CROSS JOIN abis a
WHERE a.active
  AND NOT v.deleted AND v.skip_reason IS NULL
  AND NOT p.deleted AND p.skip_reason IS NULL
  AND (
        a.abi_tag = (SELECT x.abi_tag FROM abis x WHERE x.active
                     ORDER BY x.py_major, x.py_minor, x.abi_tag LIMIT 1)
        OR EXISTS (SELECT 1 FROM builds b
                   WHERE b.package = v.package AND b.version = v.version
                     AND b.abi_tag <> a.abi_tag
                     AND b.status IN ('success', 'failed', 'timeout', 'out-of-memory',
                                      'missing-build-dependency'))
        OR EXISTS (SELECT 1 FROM abi_skips s
                   WHERE s.package = v.package AND s.version = v.version
                     AND s.abi_tag <> a.abi_tag)
      )
  AND NOT EXISTS (SELECT 1 FROM builds b
                  WHERE b.package = v.package AND b.version = v.version
                    AND b.abi_tag = a.abi_tag
                    AND b.status IN ('success', 'failed', 'timeout', 'out-of-memory',
                                     'missing-build-dependency'))
  AND NOT EXISTS (SELECT 1 FROM abi_skips s
                  WHERE s.package = v.package AND s.version = v.version
                    AND s.abi_tag = a.abi_tag)
  AND NOT EXISTS (SELECT 1 FROM files f
                  WHERE f.package = v.package AND f.version = v.version
                    AND (f.abi_tag = 'none'
                         OR (f.abi_tag = 'abi3'
                             AND tag_pyver(f.python_tag) <= a.py_major * 100 + a.py_minor)));

-- Bring the queue in line with wanted_builds: for everything, one package, or
-- one version. Rows a builder holds are never touched. Returns rows added.
CREATE FUNCTION refresh_queue(p_package text DEFAULT NULL, p_version text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    added integer;
BEGIN
    IF p_package IS NULL THEN
        DELETE FROM queue q
        WHERE q.build_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM wanted_builds w
                          WHERE w.package = q.package AND w.version = q.version
                            AND w.abi_tag = q.abi_tag);
        INSERT INTO queue (package, version, abi_tag, released)
        SELECT w.package, w.version, w.abi_tag, w.released FROM wanted_builds w
        ON CONFLICT DO NOTHING;
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

-- A builder (one interpreter on one machine) announces itself; a new ABI
-- joins the set of active ones and the queue is filled for it.
CREATE FUNCTION register_builder(p_name text, p_abi_tag text, p_platform_tag text,
                                 p_python text, p_os_release text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    pyver integer := tag_pyver(p_abi_tag);
    bid integer;
BEGIN
    IF pyver IS NULL OR p_abi_tag !~ '^[a-z]+\d+[a-z]*$' THEN
        RAISE EXCEPTION 'invalid ABI tag %', p_abi_tag;
    END IF;
    INSERT INTO abis (abi_tag, py_major, py_minor)
    VALUES (p_abi_tag, pyver / 100, pyver % 100)
    ON CONFLICT (abi_tag) DO NOTHING;
    IF FOUND THEN
        PERFORM refresh_queue();
    END IF;
    INSERT INTO builders (name, abi_tag, platform_tag, python, os_release)
    VALUES (p_name, p_abi_tag, p_platform_tag, p_python, p_os_release)
    ON CONFLICT (name, abi_tag) DO UPDATE
        SET platform_tag = EXCLUDED.platform_tag, python = EXCLUDED.python,
            os_release = EXCLUDED.os_release, last_seen = now()
    RETURNING builder_id INTO bid;
    RETURN bid;
END $$;

-- Leases that ran out go back to the queue; their builds are marked abandoned.
CREATE FUNCTION release_expired_leases() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    WITH expired AS (
        SELECT q.package, q.version, q.abi_tag, q.build_id FROM queue q
        WHERE q.build_id IS NOT NULL AND q.lease_expires < now()
        FOR UPDATE SKIP LOCKED
    ), released AS (
        UPDATE queue q SET build_id = NULL, lease_expires = NULL
        FROM expired e
        WHERE q.package = e.package AND q.version = e.version AND q.abi_tag = e.abi_tag
        RETURNING e.build_id
    )
    UPDATE builds b SET status = 'abandoned', finished_at = now()
    FROM released r WHERE b.build_id = r.build_id AND b.status = 'building';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Claim the next build for a builder's ABI. Newest releases first, then
-- backfill; an operator's priority beats both. Returns no row when idle.
CREATE FUNCTION claim_build(p_builder_id integer, p_lease_seconds integer DEFAULT 300)
RETURNS TABLE (build_id bigint, package text, version text, abi_tag text,
               sdist_filename text, sdist_url text, sdist_sha256 text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    my_abi text;
    q record;
    s record;
    new_id bigint;
BEGIN
    UPDATE builders SET last_seen = now() WHERE builders.builder_id = p_builder_id
    RETURNING builders.abi_tag INTO my_abi;
    IF my_abi IS NULL THEN
        RAISE EXCEPTION 'unknown builder %', p_builder_id;
    END IF;
    PERFORM release_expired_leases();
    LOOP
        SELECT qq.package, qq.version, qq.abi_tag INTO q FROM queue qq
        WHERE qq.abi_tag = my_abi AND qq.build_id IS NULL
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
    INSERT INTO builds (package, version, abi_tag, builder_id)
    VALUES (q.package, q.version, q.abi_tag, p_builder_id)
    RETURNING builds.build_id INTO new_id;
    UPDATE queue qq SET build_id = new_id,
        lease_expires = now() + make_interval(secs => p_lease_seconds)
    WHERE qq.package = q.package AND qq.version = q.version AND qq.abi_tag = q.abi_tag;
    build_id := new_id;
    package := q.package;
    version := q.version;
    abi_tag := q.abi_tag;
    sdist_filename := s.filename;
    sdist_url := s.url;
    sdist_sha256 := s.sha256;
    RETURN NEXT;
END $$;

-- Renew a lease while building. False means the lease was lost: stop.
CREATE FUNCTION heartbeat_build(p_build_id bigint, p_lease_seconds integer DEFAULT 300)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE queue SET lease_expires = now() + make_interval(secs => p_lease_seconds)
    WHERE build_id = p_build_id;
    RETURN FOUND;
END $$;

-- True if the store may not replace this file: the database links it.
CREATE FUNCTION file_is_recorded(p_filename text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM files WHERE filename = p_filename AND alias_of IS NULL)
$$;

-- Record a finished build: status, log, files and their dependencies; queue
-- the other ABIs it does not cover; retry infrastructure failures with
-- exponential backoff up to retry_limit; mark the package's pages dirty.
-- False if the lease was lost (the build is then recorded as abandoned).
CREATE FUNCTION finish_build(p_build_id bigint, p_status text, p_duration double precision,
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
                        'missing-build-dependency', 'infrastructure') THEN
        RAISE EXCEPTION 'invalid build status %', p_status;
    END IF;
    SELECT * INTO b FROM builds WHERE builds.build_id = p_build_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown build %', p_build_id;
    END IF;
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
    PERFORM pg_notify('piwheels_index', b.package);
    RETURN true;
END $$;
