-- 0004: what the benchmarks found (docs/benchmarks.md, "Proposed fixes").
--
-- * wanted_builds: "which ABIs already have a final attempt / a skip" and
--   "is there a covering pure or abi3 wheel" are computed once per version
--   (grouped passes joined to versions) instead of a correlated probe per
--   (version, ABI): a full refresh_queue() read 19.4 million index probes at
--   PyPI's size. For one package or version the planner pushes the equality
--   into the grouped subqueries, so the per-build refresh stays an index probe.
-- * finish_build: lock the version row (no more deadlocks between two ABIs
--   finishing the same version) and no pg_notify (it serialised commits).
-- * versions_released: an index no query reads, maintained on every insert.

CREATE OR REPLACE VIEW wanted_builds AS
SELECT v.package, v.version, a.abi_tag, v.released
FROM versions v
JOIN packages p ON p.package = v.package
LEFT JOIN (SELECT b.package, b.version, array_agg(DISTINCT b.abi_tag) AS abis
           FROM builds b
           WHERE b.status IN ('success', 'failed', 'timeout', 'out-of-memory',
                              'missing-build-dependency')
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
CROSS JOIN abis a
WHERE a.active
  AND NOT v.deleted AND v.skip_reason IS NULL
  AND NOT p.deleted AND p.skip_reason IS NULL
  AND (
        a.abi_tag = (SELECT x.abi_tag FROM abis x WHERE x.active
                     ORDER BY x.py_major, x.py_minor, x.abi_tag LIMIT 1)
        OR NOT (coalesce(fin.abis, '{}') <@ ARRAY[a.abi_tag])
        OR NOT (coalesce(sk.abis, '{}') <@ ARRAY[a.abi_tag])
      )
  AND NOT (a.abi_tag = ANY (coalesce(fin.abis, '{}')))
  AND NOT (a.abi_tag = ANY (coalesce(sk.abis, '{}')))
  AND NOT coalesce(cov.pure, false)
  AND NOT coalesce(cov.abi3_from <= a.py_major * 100 + a.py_minor, false);

DROP INDEX IF EXISTS versions_released;

-- Record a finished build: status, log, files and their dependencies; queue
-- the other ABIs it does not cover; retry infrastructure failures with
-- exponential backoff up to retry_limit; mark the package's pages dirty
-- (the index writer polls index_dirty: no NOTIFY, whose commit lock made
-- every finish wait for the others' WAL flushes).
-- False if the lease was lost (the build is then recorded as abandoned).
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
                        'missing-build-dependency', 'infrastructure') THEN
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
