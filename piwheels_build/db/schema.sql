-- The schema db/migrations/ produce, whole (pg_dump --schema-only, normalised).
-- Generated: do not edit. After adding a migration, regenerate it with
--     python -m piwheels_build.db.schema

CREATE FUNCTION public.add_package_names(p_names text[], p_packages text[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    INSERT INTO package_names (name, package)
    SELECT n.name, n.package FROM unnest(p_names, p_packages) AS n(name, package)
    WHERE NOT EXISTS (SELECT 1 FROM package_names x WHERE x.name = n.name)
    ON CONFLICT (name) DO NOTHING
$$;

CREATE FUNCTION public.add_packages(p_packages text[], p_display_names text[], p_serials bigint[] DEFAULT NULL::bigint[]) RETURNS SETOF text
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    INSERT INTO packages (package, display_name, upstream_serial)
    SELECT * FROM unnest(p_packages, p_display_names, p_serials)
    ON CONFLICT (package) DO NOTHING
    RETURNING package
$$;

CREATE FUNCTION public.claim_build(p_builder_id integer, p_lease_seconds integer DEFAULT 300) RETURNS TABLE(build_id bigint, package text, version text, target text, sdist_filename text, sdist_url text, sdist_sha256 text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.clear_dirty(p_packages text[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    DELETE FROM index_dirty WHERE package = ANY (p_packages)
$$;

CREATE FUNCTION public.expire_leases() RETURNS TABLE(build_id bigint, package text, version text, target text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.farm_stats(p_detail boolean DEFAULT true) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.file_is_recorded(p_filename text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    SELECT EXISTS (SELECT 1 FROM files WHERE filename = p_filename AND alias_of IS NULL)
$$;

CREATE FUNCTION public.fill_requires_python(p_packages text[], p_versions text[], p_specs text[], p_masks bigint[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.finish_build(p_build_id bigint, p_status text, p_duration double precision, p_log bytea, p_log_size bigint, p_log_truncated boolean, p_files jsonb DEFAULT '[]'::jsonb) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.flag_named(p_packages text[], p_names text[], p_serials bigint[], p_gone text[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
DECLARE
    n_new integer;
BEGIN
    SELECT count(*) INTO n_new FROM add_packages(p_packages, p_names, p_serials);
    PERFORM add_package_names(p_names, p_packages);
    UPDATE packages p SET needs_sync = true,
           upstream_serial = greatest(p.upstream_serial, v.serial)
    FROM (SELECT * FROM unnest(p_packages, p_serials)
          UNION ALL
          SELECT unnest(p_gone), NULL::bigint) AS v(package, serial)
    WHERE p.package = v.package
      AND (v.serial IS NOT NULL OR NOT p.deleted);  -- removed, already deleted: skip
    RETURN n_new;
END $$;

CREATE FUNCTION public.heartbeat_build(p_build_id bigint, p_lease_seconds integer DEFAULT 300) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
BEGIN
    UPDATE queue SET lease_expires = now() + make_interval(secs => p_lease_seconds)
    WHERE build_id = p_build_id;
    RETURN FOUND;
END $$;

CREATE FUNCTION public.is_final_status(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT status IN ('success', 'failed', 'timeout', 'out-of-memory', 'missing-build-dependency',
                      'not-for-python')
$$;

CREATE FUNCTION public.load_project_list(p_names text[], p_packages text[], p_serials bigint[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
BEGIN
    IF to_regclass('pg_temp.sync_list') IS NULL THEN
        CREATE TEMP TABLE sync_list (name text NOT NULL, package text NOT NULL, serial bigint)
        ON COMMIT DROP;
    END IF;
    INSERT INTO pg_temp.sync_list SELECT * FROM unnest(p_names, p_packages, p_serials);
END $$;

CREATE FUNCTION public.mark_dirty(p_packages text[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    INSERT INTO index_dirty (package) SELECT unnest(p_packages)
    ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since
$$;

CREATE FUNCTION public.mark_download_pages(p_today date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
DECLARE
    v_n integer;
BEGIN
    INSERT INTO index_dirty (package)
    SELECT DISTINCT package FROM project_downloads_daily
    WHERE day IN (p_today - 1, p_today - 30)
    ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

CREATE FUNCTION public.merge_project_list(p_resync_oldest integer DEFAULT 0) RETURNS TABLE(new_packages integer, gone_packages integer)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
DECLARE
    gone text[];
    pkgs text[];
    names text[];
    serials bigint[];
BEGIN
    IF to_regclass('pg_temp.sync_list') IS NULL THEN
        CREATE TEMP TABLE sync_list (name text NOT NULL, package text NOT NULL, serial bigint)
        ON COMMIT DROP;
    END IF;
    CREATE TEMP TABLE sync_pkgs ON COMMIT DROP AS
        SELECT l.package, min(l.name) AS name, max(l.serial) AS serial
        FROM pg_temp.sync_list l GROUP BY l.package;
    ANALYZE pg_temp.sync_list;
    ANALYZE pg_temp.sync_pkgs;

    -- One pass each: the three arrays of an aggregate row are in the same order.
    SELECT array_agg(s.package), array_agg(s.name), array_agg(s.serial)
    INTO pkgs, names, serials FROM pg_temp.sync_pkgs s;
    SELECT count(*) INTO new_packages FROM add_packages(pkgs, names, serials);
    SELECT array_agg(l.name), array_agg(l.package) INTO names, pkgs FROM pg_temp.sync_list l;
    PERFORM add_package_names(names, pkgs);
    UPDATE packages p SET
        upstream_serial = coalesce(s.serial, p.upstream_serial),
        needs_sync = p.needs_sync OR p.deleted
                     OR (s.serial IS NOT NULL AND s.serial IS DISTINCT FROM p.upstream_serial),
        deleted = false,
        display_name = s.name
    FROM pg_temp.sync_pkgs s
    WHERE p.package = s.package
      AND (p.deleted OR p.display_name <> s.name
           OR (s.serial IS NOT NULL AND s.serial IS DISTINCT FROM p.upstream_serial));

    WITH g AS (
        UPDATE packages p SET deleted = true, needs_sync = false
        WHERE NOT p.deleted
          AND NOT EXISTS (SELECT 1 FROM pg_temp.sync_pkgs s WHERE s.package = p.package)
        RETURNING p.package
    )
    SELECT array_agg(g.package ORDER BY g.package) INTO gone FROM g;
    gone_packages := coalesce(cardinality(gone), 0);
    IF gone IS NOT NULL THEN
        PERFORM package_changed(gone);
    END IF;

    IF coalesce(p_resync_oldest, 0) > 0 THEN
        UPDATE packages SET needs_sync = true WHERE package IN (
            SELECT o.package FROM packages o WHERE NOT o.deleted AND NOT o.needs_sync
            ORDER BY o.synced_at NULLS FIRST, o.package LIMIT p_resync_oldest);
    END IF;

    PERFORM set_setting('full_list_at',
                        to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
    RETURN NEXT;
END $$;

CREATE FUNCTION public.package_changed(p_packages text[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
DECLARE
    added integer;
BEGIN
    SELECT coalesce(sum(refresh_queue(p)), 0) INTO added FROM unnest(p_packages) AS p;
    PERFORM mark_dirty(p_packages);
    RETURN added;
END $$;

CREATE FUNCTION public.packages_not_found(p_packages text[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    UPDATE packages SET deleted = true, needs_sync = false, synced_at = now()
    WHERE package = ANY (p_packages)
$$;

CREATE FUNCTION public.packages_synced(p_packages text[], p_serials bigint[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    UPDATE packages p SET synced_serial = coalesce(v.serial, p.upstream_serial),
           synced_at = now(), deleted = false,
           needs_sync = coalesce(v.serial < p.upstream_serial, false)
    FROM unnest(p_packages, p_serials) AS v(package, serial)
    WHERE p.package = v.package
$$;

CREATE FUNCTION public.python_bit(p_major integer, p_minor integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN p_major = 3 AND p_minor BETWEEN 0 AND 62
                THEN 1::bigint << p_minor END
$$;

CREATE FUNCTION public.python_excludes(p_mask bigint, p_major integer, p_minor integer) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT coalesce(p_mask & python_bit(p_major, p_minor) <> 0, false)
$$;

CREATE FUNCTION public.record_downloads(p_fingerprint text, p_path text, p_device bigint, p_inode bigint, p_start bigint, p_position bigint, p_tail text, p_lines bigint, p_bad_lines bigint, p_days date[], p_filenames text[], p_counts bigint[], p_dim_days date[], p_dimensions text[], p_values text[], p_dim_counts bigint[]) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
DECLARE
    v_at bigint;
    v_packages text[];
    v_unknown bigint;
BEGIN
    INSERT INTO download_logs (fingerprint, path, device, inode)
    VALUES (p_fingerprint, p_path, p_device, p_inode) ON CONFLICT DO NOTHING;
    SELECT position INTO v_at FROM download_logs WHERE fingerprint = p_fingerprint
    FOR UPDATE;
    IF v_at <> p_start THEN
        RETURN NULL;
    END IF;

    CREATE TEMP TABLE IF NOT EXISTS pg_temp.dl_rows (
        day date, filename text, n bigint, package text, seconds double precision
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.dl_rows;
    -- The file's project and its build's duration: one probe per distinct file.
    INSERT INTO pg_temp.dl_rows
    SELECT r.day, r.filename, r.n, f.package, coalesce(b.duration, 0)
    FROM unnest(p_days, p_filenames, p_counts) AS r(day, filename, n)
    LEFT JOIN files f ON f.filename = r.filename
    LEFT JOIN builds b ON b.build_id = f.build_id;

    INSERT INTO file_downloads_daily AS d (day, filename, package, downloads)
    SELECT day, filename, package, n FROM pg_temp.dl_rows
    ON CONFLICT (day, filename) DO UPDATE SET downloads = d.downloads + EXCLUDED.downloads;

    INSERT INTO file_downloads AS d (filename, package, downloads)
    SELECT filename, min(package), sum(n) FROM pg_temp.dl_rows GROUP BY filename
    ON CONFLICT (filename) DO UPDATE
    SET downloads = d.downloads + EXCLUDED.downloads,
        package = coalesce(EXCLUDED.package, d.package);

    INSERT INTO project_downloads_daily AS d (package, day, downloads, seconds_saved)
    SELECT package, day, sum(n), sum(n * seconds) FROM pg_temp.dl_rows
    WHERE package IS NOT NULL GROUP BY package, day
    ON CONFLICT (package, day) DO UPDATE
    SET downloads = d.downloads + EXCLUDED.downloads,
        seconds_saved = d.seconds_saved + EXCLUDED.seconds_saved;

    INSERT INTO project_downloads AS d (package, downloads, seconds_saved)
    SELECT package, sum(n), sum(n * seconds) FROM pg_temp.dl_rows
    WHERE package IS NOT NULL GROUP BY package
    ON CONFLICT (package) DO UPDATE
    SET downloads = d.downloads + EXCLUDED.downloads,
        seconds_saved = d.seconds_saved + EXCLUDED.seconds_saved;

    INSERT INTO downloads_days AS d (day, downloads, unknown, seconds_saved)
    SELECT day, coalesce(sum(n) FILTER (WHERE package IS NOT NULL), 0),
           coalesce(sum(n) FILTER (WHERE package IS NULL), 0), sum(n * seconds)
    FROM pg_temp.dl_rows GROUP BY day
    ON CONFLICT (day) DO UPDATE
    SET downloads = d.downloads + EXCLUDED.downloads, unknown = d.unknown + EXCLUDED.unknown,
        seconds_saved = d.seconds_saved + EXCLUDED.seconds_saved;

    INSERT INTO downloads_by AS d (day, dimension, value, downloads)
    SELECT * FROM unnest(p_dim_days, p_dimensions, p_values, p_dim_counts)
    ON CONFLICT (day, dimension, value) DO UPDATE
    SET downloads = d.downloads + EXCLUDED.downloads;

    SELECT coalesce(array_agg(DISTINCT package ORDER BY package)
                    FILTER (WHERE package IS NOT NULL), '{}'),
           coalesce(sum(n) FILTER (WHERE package IS NULL), 0)
    INTO v_packages, v_unknown FROM pg_temp.dl_rows;

    UPDATE download_logs
    SET path = p_path, device = p_device, inode = p_inode, position = p_position,
        tail_sha256 = p_tail,
        lines = lines + p_lines, bad_lines = bad_lines + p_bad_lines,
        downloads = downloads + coalesce((SELECT sum(n) FROM pg_temp.dl_rows), 0),
        read_at = now()
    WHERE fingerprint = p_fingerprint;
    RETURN jsonb_build_object('packages', to_jsonb(v_packages), 'unknown', v_unknown);
END $$;

CREATE FUNCTION public.redirty(p_packages text[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    INSERT INTO index_dirty (package, since) SELECT unnest(p_packages), clock_timestamp()
    ON CONFLICT DO NOTHING
$$;

CREATE FUNCTION public.refresh_queue(p_package text DEFAULT NULL::text, p_version text DEFAULT NULL::text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.refresh_queue_all() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    SET enable_nestloop TO 'off'
    AS $$
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

CREATE FUNCTION public.register_builder(p_name text, p_abi_tag text, p_platform_tag text, p_python text, p_os_release text DEFAULT NULL::text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $_$
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
END $_$;

CREATE FUNCTION public.requeue_version(p_package text, p_version text, p_target text DEFAULT NULL::text, p_priority integer DEFAULT 0) RETURNS TABLE(forgotten integer, added integer, reprioritised integer, queued text[])
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.set_setting(p_key text, p_value text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
BEGIN
    INSERT INTO settings (key, value) VALUES (p_key, p_value)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
    WHERE settings.value IS DISTINCT FROM EXCLUDED.value;
    RETURN FOUND;
END $$;

CREATE FUNCTION public.skip_version(p_package text, p_version text DEFAULT NULL::text, p_target text DEFAULT NULL::text, p_note text DEFAULT NULL::text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.tag_pyver(tag text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT substring(tag FROM '^[a-z]+(\d)')::integer * 100
         + substring(tag FROM '^[a-z]+\d(\d+)')::integer
$$;

CREATE FUNCTION public.take_dirty_batch(p_since timestamp with time zone, p_limit integer) RETURNS SETOF text
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    DELETE FROM index_dirty WHERE package IN (
        SELECT package FROM index_dirty WHERE since <= p_since
        ORDER BY package LIMIT p_limit FOR UPDATE SKIP LOCKED)
    RETURNING package
$$;

CREATE FUNCTION public.targets_named(p_name text) RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path TO 'public', 'pg_temp'
    AS $$
    SELECT coalesce(array_agg(t.target ORDER BY t.py_major, t.py_minor, t.platform_tag), '{}')
    FROM targets t
    WHERE p_name IN (t.target, t.abi_tag, t.platform_tag)
$$;

CREATE FUNCTION public.unskip_version(p_package text, p_version text DEFAULT NULL::text, p_target text DEFAULT NULL::text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE FUNCTION public.write_upstream_files(p_stale text[], p_filenames text[], p_packages text[], p_versions text[], p_kinds text[], p_urls text[], p_sha256 text[], p_sizes bigint[], p_requires_python text[], p_upload_times timestamp with time zone[], p_yanked boolean[], p_yanked_reasons text[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
BEGIN
    IF cardinality(p_stale) > 0 THEN
        DELETE FROM upstream_files WHERE filename = ANY (p_stale);
    END IF;
    IF cardinality(p_filenames) > 0 THEN
        INSERT INTO upstream_files (filename, package, version, kind, url, sha256, size,
                                    requires_python, upload_time, yanked, yanked_reason)
        SELECT * FROM unnest(p_filenames, p_packages, p_versions, p_kinds, p_urls, p_sha256,
                             p_sizes, p_requires_python, p_upload_times, p_yanked,
                             p_yanked_reasons)
        ON CONFLICT (filename) DO UPDATE SET package = EXCLUDED.package,
            version = EXCLUDED.version, kind = EXCLUDED.kind, url = EXCLUDED.url,
            sha256 = EXCLUDED.sha256, size = EXCLUDED.size,
            requires_python = EXCLUDED.requires_python, upload_time = EXCLUDED.upload_time,
            yanked = EXCLUDED.yanked, yanked_reason = EXCLUDED.yanked_reason;
    END IF;
END $$;

CREATE FUNCTION public.write_versions(p_packages text[], p_versions text[], p_released timestamp with time zone[], p_yanked boolean[], p_yanked_reasons text[], p_prerelease boolean[], p_deleted boolean[], p_skip_reasons text[], p_requires_python text[], p_python_excluded bigint[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
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

CREATE TABLE public.build_logs (
    build_id bigint NOT NULL,
    log bytea NOT NULL,
    size bigint NOT NULL,
    truncated boolean DEFAULT false NOT NULL
);

CREATE TABLE public.builders (
    builder_id integer NOT NULL,
    name text NOT NULL,
    abi_tag text NOT NULL,
    platform_tag text NOT NULL,
    python text NOT NULL,
    os_release text,
    first_seen timestamp with time zone DEFAULT now() NOT NULL,
    last_seen timestamp with time zone DEFAULT now() NOT NULL,
    target text NOT NULL
);

CREATE SEQUENCE public.builders_builder_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.builders_builder_id_seq OWNED BY public.builders.builder_id;

CREATE TABLE public.builds (
    build_id bigint NOT NULL,
    package text NOT NULL,
    version text NOT NULL,
    builder_id integer NOT NULL,
    status text DEFAULT 'building'::text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    duration double precision,
    target text NOT NULL,
    CONSTRAINT builds_status_check CHECK ((status = ANY (ARRAY['building'::text, 'success'::text, 'failed'::text, 'timeout'::text, 'out-of-memory'::text, 'missing-build-dependency'::text, 'infrastructure'::text, 'abandoned'::text, 'not-for-python'::text])))
);

CREATE SEQUENCE public.builds_build_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.builds_build_id_seq OWNED BY public.builds.build_id;

CREATE TABLE public.dependencies (
    filename text NOT NULL,
    tool text NOT NULL,
    dependency text NOT NULL,
    CONSTRAINT dependencies_tool_check CHECK ((tool = ANY (ARRAY['pip'::text, 'apt'::text, 'lib'::text])))
);

CREATE TABLE public.download_logs (
    fingerprint text NOT NULL,
    path text NOT NULL,
    device bigint,
    inode bigint,
    "position" bigint DEFAULT 0 NOT NULL,
    tail_sha256 text,
    lines bigint DEFAULT 0 NOT NULL,
    bad_lines bigint DEFAULT 0 NOT NULL,
    downloads bigint DEFAULT 0 NOT NULL,
    first_read_at timestamp with time zone DEFAULT now() NOT NULL,
    read_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT download_logs_fingerprint_check CHECK ((fingerprint ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT download_logs_position_check CHECK (("position" >= 0))
);

CREATE TABLE public.downloads_by (
    day date NOT NULL,
    dimension text NOT NULL,
    value text NOT NULL,
    downloads bigint NOT NULL,
    CONSTRAINT downloads_by_dimension_check CHECK ((dimension = ANY (ARRAY['installer'::text, 'python'::text, 'implementation'::text, 'platform'::text, 'distro'::text])))
);

CREATE TABLE public.downloads_days (
    day date NOT NULL,
    downloads bigint DEFAULT 0 NOT NULL,
    unknown bigint DEFAULT 0 NOT NULL,
    seconds_saved double precision DEFAULT 0 NOT NULL
);

CREATE TABLE public.file_downloads (
    filename text NOT NULL,
    package text,
    downloads bigint NOT NULL
);

CREATE TABLE public.file_downloads_daily (
    day date NOT NULL,
    filename text NOT NULL,
    package text,
    downloads bigint NOT NULL
);

CREATE TABLE public.files (
    filename text NOT NULL,
    build_id bigint NOT NULL,
    package text NOT NULL,
    version text NOT NULL,
    python_tag text NOT NULL,
    abi_tag text NOT NULL,
    platform_tag text NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    requires_python text,
    metadata_sha256 text,
    alias_of text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    alias_note text,
    CONSTRAINT files_sha256_check CHECK ((sha256 ~ '^[0-9a-f]{64}$'::text))
);

CREATE TABLE public.index_dirty (
    package text NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.package_names (
    name text NOT NULL,
    package text NOT NULL,
    seen_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.packages (
    package text NOT NULL,
    display_name text NOT NULL,
    skip_reason text,
    deleted boolean DEFAULT false NOT NULL,
    upstream_serial bigint,
    synced_serial bigint,
    needs_sync boolean DEFAULT true NOT NULL,
    synced_at timestamp with time zone,
    added_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT packages_package_check CHECK ((package ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'::text))
);

CREATE TABLE public.project_downloads (
    package text NOT NULL,
    downloads bigint NOT NULL,
    seconds_saved double precision DEFAULT 0 NOT NULL
);

CREATE TABLE public.project_downloads_daily (
    package text NOT NULL,
    day date NOT NULL,
    downloads bigint NOT NULL,
    seconds_saved double precision DEFAULT 0 NOT NULL
);

CREATE TABLE public.queue (
    package text NOT NULL,
    version text NOT NULL,
    released timestamp with time zone NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    not_before timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    build_id bigint,
    lease_expires timestamp with time zone,
    queued_at timestamp with time zone DEFAULT now() NOT NULL,
    target text NOT NULL
);

CREATE TABLE public.schema_version (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.settings (
    key text NOT NULL,
    value text NOT NULL
);

CREATE TABLE public.target_skips (
    package text NOT NULL,
    version text NOT NULL,
    target text NOT NULL,
    reason text NOT NULL,
    note text,
    at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT target_skips_reason_check CHECK ((reason = ANY (ARRAY['too-many-failures'::text, 'admin'::text])))
);

CREATE TABLE public.targets (
    target text NOT NULL,
    abi_tag text NOT NULL,
    platform_tag text NOT NULL,
    py_major integer NOT NULL,
    py_minor integer NOT NULL,
    active boolean DEFAULT true NOT NULL,
    added_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT targets_abi_tag_check CHECK ((abi_tag ~ '^[a-z]+\d+[a-z]*$'::text)),
    CONSTRAINT targets_check CHECK ((target = ((abi_tag || '-'::text) || platform_tag))),
    CONSTRAINT targets_platform_tag_check CHECK ((platform_tag ~ '^[a-z0-9_]+$'::text))
);

CREATE TABLE public.upstream_files (
    filename text NOT NULL,
    package text NOT NULL,
    version text NOT NULL,
    kind text NOT NULL,
    url text NOT NULL,
    sha256 text,
    size bigint,
    requires_python text,
    upload_time timestamp with time zone,
    yanked boolean DEFAULT false NOT NULL,
    yanked_reason text,
    CONSTRAINT upstream_files_kind_check CHECK ((kind = ANY (ARRAY['sdist'::text, 'wheel'::text, 'other'::text])))
);

CREATE TABLE public.versions (
    package text NOT NULL,
    version text NOT NULL,
    released timestamp with time zone DEFAULT now() NOT NULL,
    yanked boolean DEFAULT false NOT NULL,
    yanked_reason text,
    prerelease boolean DEFAULT false NOT NULL,
    deleted boolean DEFAULT false NOT NULL,
    skip_reason text,
    skip_note text,
    added_at timestamp with time zone DEFAULT now() NOT NULL,
    requires_python text,
    python_excluded bigint,
    CONSTRAINT versions_skip_reason_check CHECK ((skip_reason = ANY (ARRAY['binary-only'::text, 'deleted'::text, 'yanked'::text, 'admin'::text, 'too-many-failures'::text])))
);

CREATE VIEW public.wanted_builds AS
 SELECT v.package,
    v.version,
    a.target,
    v.released
   FROM (((((public.versions v
     JOIN public.packages p ON ((p.package = v.package)))
     LEFT JOIN ( SELECT b.package,
            b.version,
            array_agg(DISTINCT b.target) AS targets
           FROM public.builds b
          WHERE (b.status = ANY (ARRAY['success'::text, 'failed'::text, 'timeout'::text, 'out-of-memory'::text, 'missing-build-dependency'::text, 'not-for-python'::text]))
          GROUP BY b.package, b.version) fin ON (((fin.package = v.package) AND (fin.version = v.version))))
     LEFT JOIN ( SELECT s.package,
            s.version,
            array_agg(s.target) AS targets
           FROM public.target_skips s
          GROUP BY s.package, s.version) sk ON (((sk.package = v.package) AND (sk.version = v.version))))
     LEFT JOIN ( SELECT f.package,
            f.version,
            bool_or((f.abi_tag = 'none'::text)) AS pure,
            jsonb_object_agg(f.platform_tag, f.pyver) FILTER (WHERE (f.abi_tag = 'abi3'::text)) AS abi3_from
           FROM ( SELECT ff.package,
                    ff.version,
                    ff.abi_tag,
                    ff.platform_tag,
                    min(public.tag_pyver(ff.python_tag)) AS pyver
                   FROM public.files ff
                  WHERE (ff.abi_tag = ANY (ARRAY['none'::text, 'abi3'::text]))
                  GROUP BY ff.package, ff.version, ff.abi_tag, ff.platform_tag) f
          GROUP BY f.package, f.version) cov ON (((cov.package = v.package) AND (cov.version = v.version))))
     CROSS JOIN ( SELECT x.target,
            x.platform_tag,
            x.py_major,
            x.py_minor,
            COALESCE(bit_or(x."bit") OVER w, (0)::bigint) AS lower_bits,
            COALESCE(bool_or((x."bit" IS NULL)) OVER w, false) AS lower_other
           FROM ( SELECT t.target,
                    t.abi_tag,
                    t.platform_tag,
                    t.py_major,
                    t.py_minor,
                    t.active,
                    t.added_at,
                    public.python_bit(t.py_major, t.py_minor) AS "bit"
                   FROM public.targets t
                  WHERE t.active) x
          WINDOW w AS (ORDER BY x.py_major, x.py_minor, x.platform_tag ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) a)
  WHERE ((NOT v.deleted) AND (v.skip_reason IS NULL) AND (NOT p.deleted) AND (p.skip_reason IS NULL) AND (NOT public.python_excludes(v.python_excluded, a.py_major, a.py_minor)) AND (((NOT a.lower_other) AND ((a.lower_bits & (~ COALESCE(v.python_excluded, (0)::bigint))) = 0)) OR (NOT (COALESCE(fin.targets, '{}'::text[]) <@ ARRAY[a.target])) OR (NOT (COALESCE(sk.targets, '{}'::text[]) <@ ARRAY[a.target]))) AND (NOT (a.target = ANY (COALESCE(fin.targets, '{}'::text[])))) AND (NOT (a.target = ANY (COALESCE(sk.targets, '{}'::text[])))) AND (NOT COALESCE(cov.pure, false)) AND (NOT COALESCE((((cov.abi3_from ->> a.platform_tag))::integer <= ((a.py_major * 100) + a.py_minor)), false)));

ALTER TABLE ONLY public.builders ALTER COLUMN builder_id SET DEFAULT nextval('public.builders_builder_id_seq'::regclass);

ALTER TABLE ONLY public.builds ALTER COLUMN build_id SET DEFAULT nextval('public.builds_build_id_seq'::regclass);

ALTER TABLE ONLY public.build_logs
    ADD CONSTRAINT build_logs_pkey PRIMARY KEY (build_id);

ALTER TABLE ONLY public.builders
    ADD CONSTRAINT builders_name_target_key UNIQUE (name, target);

ALTER TABLE ONLY public.builders
    ADD CONSTRAINT builders_pkey PRIMARY KEY (builder_id);

ALTER TABLE ONLY public.builds
    ADD CONSTRAINT builds_pkey PRIMARY KEY (build_id);

ALTER TABLE ONLY public.dependencies
    ADD CONSTRAINT dependencies_pkey PRIMARY KEY (filename, tool, dependency);

ALTER TABLE ONLY public.download_logs
    ADD CONSTRAINT download_logs_pkey PRIMARY KEY (fingerprint);

ALTER TABLE ONLY public.downloads_by
    ADD CONSTRAINT downloads_by_pkey PRIMARY KEY (day, dimension, value);

ALTER TABLE ONLY public.downloads_days
    ADD CONSTRAINT downloads_days_pkey PRIMARY KEY (day);

ALTER TABLE ONLY public.file_downloads_daily
    ADD CONSTRAINT file_downloads_daily_pkey PRIMARY KEY (day, filename);

ALTER TABLE ONLY public.file_downloads
    ADD CONSTRAINT file_downloads_pkey PRIMARY KEY (filename);

ALTER TABLE ONLY public.files
    ADD CONSTRAINT files_pkey PRIMARY KEY (filename);

ALTER TABLE ONLY public.index_dirty
    ADD CONSTRAINT index_dirty_pkey PRIMARY KEY (package);

ALTER TABLE ONLY public.package_names
    ADD CONSTRAINT package_names_pkey PRIMARY KEY (name);

ALTER TABLE ONLY public.packages
    ADD CONSTRAINT packages_pkey PRIMARY KEY (package);

ALTER TABLE ONLY public.project_downloads_daily
    ADD CONSTRAINT project_downloads_daily_pkey PRIMARY KEY (package, day);

ALTER TABLE ONLY public.project_downloads
    ADD CONSTRAINT project_downloads_pkey PRIMARY KEY (package);

ALTER TABLE ONLY public.queue
    ADD CONSTRAINT queue_pkey PRIMARY KEY (package, version, target);

ALTER TABLE ONLY public.schema_version
    ADD CONSTRAINT schema_version_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY public.target_skips
    ADD CONSTRAINT target_skips_pkey PRIMARY KEY (package, version, target);

ALTER TABLE ONLY public.targets
    ADD CONSTRAINT targets_abi_tag_platform_tag_key UNIQUE (abi_tag, platform_tag);

ALTER TABLE ONLY public.targets
    ADD CONSTRAINT targets_pkey PRIMARY KEY (target);

ALTER TABLE ONLY public.upstream_files
    ADD CONSTRAINT upstream_files_pkey PRIMARY KEY (filename);

ALTER TABLE ONLY public.versions
    ADD CONSTRAINT versions_pkey PRIMARY KEY (package, version);

CREATE INDEX builds_builder ON public.builds USING btree (builder_id);

CREATE INDEX builds_version ON public.builds USING btree (package, version, target);

CREATE INDEX files_alias ON public.files USING btree (alias_of) WHERE (alias_of IS NOT NULL);

CREATE INDEX files_build ON public.files USING btree (build_id);

CREATE INDEX files_version ON public.files USING btree (package, version);

CREATE INDEX package_names_package ON public.package_names USING btree (package);

CREATE INDEX packages_needs_sync ON public.packages USING btree (package) WHERE needs_sync;

CREATE INDEX packages_synced_at ON public.packages USING btree (synced_at) WHERE (NOT deleted);

CREATE INDEX project_downloads_daily_day ON public.project_downloads_daily USING btree (day);

CREATE INDEX project_downloads_top ON public.project_downloads USING btree (downloads DESC);

CREATE UNIQUE INDEX queue_build ON public.queue USING btree (build_id) WHERE (build_id IS NOT NULL);

CREATE INDEX queue_leases ON public.queue USING btree (lease_expires) WHERE (build_id IS NOT NULL);

CREATE INDEX queue_next ON public.queue USING btree (target, priority DESC, released DESC) WHERE (build_id IS NULL);

CREATE INDEX upstream_files_version ON public.upstream_files USING btree (package, version);

CREATE INDEX versions_python_pending ON public.versions USING btree (package, version) WHERE (python_excluded IS NULL);

ALTER TABLE ONLY public.build_logs
    ADD CONSTRAINT build_logs_build_id_fkey FOREIGN KEY (build_id) REFERENCES public.builds(build_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.builders
    ADD CONSTRAINT builders_target_fkey FOREIGN KEY (target) REFERENCES public.targets(target);

ALTER TABLE ONLY public.builds
    ADD CONSTRAINT builds_builder_id_fkey FOREIGN KEY (builder_id) REFERENCES public.builders(builder_id);

ALTER TABLE ONLY public.builds
    ADD CONSTRAINT builds_package_version_fkey FOREIGN KEY (package, version) REFERENCES public.versions(package, version) ON DELETE CASCADE;

ALTER TABLE ONLY public.builds
    ADD CONSTRAINT builds_target_fkey FOREIGN KEY (target) REFERENCES public.targets(target);

ALTER TABLE ONLY public.dependencies
    ADD CONSTRAINT dependencies_filename_fkey FOREIGN KEY (filename) REFERENCES public.files(filename) ON DELETE CASCADE;

ALTER TABLE ONLY public.files
    ADD CONSTRAINT files_alias_of_fkey FOREIGN KEY (alias_of) REFERENCES public.files(filename) ON DELETE CASCADE;

ALTER TABLE ONLY public.files
    ADD CONSTRAINT files_build_id_fkey FOREIGN KEY (build_id) REFERENCES public.builds(build_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.files
    ADD CONSTRAINT files_package_version_fkey FOREIGN KEY (package, version) REFERENCES public.versions(package, version) ON DELETE CASCADE;

ALTER TABLE ONLY public.package_names
    ADD CONSTRAINT package_names_package_fkey FOREIGN KEY (package) REFERENCES public.packages(package) ON DELETE CASCADE;

ALTER TABLE ONLY public.queue
    ADD CONSTRAINT queue_build_id_fkey FOREIGN KEY (build_id) REFERENCES public.builds(build_id) ON DELETE SET NULL;

ALTER TABLE ONLY public.queue
    ADD CONSTRAINT queue_package_version_fkey FOREIGN KEY (package, version) REFERENCES public.versions(package, version) ON DELETE CASCADE;

ALTER TABLE ONLY public.queue
    ADD CONSTRAINT queue_target_fkey FOREIGN KEY (target) REFERENCES public.targets(target);

ALTER TABLE ONLY public.target_skips
    ADD CONSTRAINT target_skips_package_version_fkey FOREIGN KEY (package, version) REFERENCES public.versions(package, version) ON DELETE CASCADE;

ALTER TABLE ONLY public.target_skips
    ADD CONSTRAINT target_skips_target_fkey FOREIGN KEY (target) REFERENCES public.targets(target);

ALTER TABLE ONLY public.upstream_files
    ADD CONSTRAINT upstream_files_package_version_fkey FOREIGN KEY (package, version) REFERENCES public.versions(package, version) ON DELETE CASCADE;

ALTER TABLE ONLY public.versions
    ADD CONSTRAINT versions_package_fkey FOREIGN KEY (package) REFERENCES public.packages(package) ON DELETE CASCADE;

GRANT USAGE ON SCHEMA public TO piwheels_master;
GRANT USAGE ON SCHEMA public TO piwheels_builder;
GRANT USAGE ON SCHEMA public TO piwheels_web;

REVOKE ALL ON FUNCTION public.add_package_names(p_names text[], p_packages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.add_package_names(p_names text[], p_packages text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.add_packages(p_packages text[], p_display_names text[], p_serials bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.add_packages(p_packages text[], p_display_names text[], p_serials bigint[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.claim_build(p_builder_id integer, p_lease_seconds integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.claim_build(p_builder_id integer, p_lease_seconds integer) TO piwheels_master;
GRANT ALL ON FUNCTION public.claim_build(p_builder_id integer, p_lease_seconds integer) TO piwheels_builder;

REVOKE ALL ON FUNCTION public.clear_dirty(p_packages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.clear_dirty(p_packages text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.expire_leases() FROM PUBLIC;
GRANT ALL ON FUNCTION public.expire_leases() TO piwheels_master;

REVOKE ALL ON FUNCTION public.farm_stats(p_detail boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION public.farm_stats(p_detail boolean) TO piwheels_master;
GRANT ALL ON FUNCTION public.farm_stats(p_detail boolean) TO piwheels_web;

REVOKE ALL ON FUNCTION public.file_is_recorded(p_filename text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.file_is_recorded(p_filename text) TO piwheels_master;
GRANT ALL ON FUNCTION public.file_is_recorded(p_filename text) TO piwheels_builder;

REVOKE ALL ON FUNCTION public.fill_requires_python(p_packages text[], p_versions text[], p_specs text[], p_masks bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.fill_requires_python(p_packages text[], p_versions text[], p_specs text[], p_masks bigint[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.finish_build(p_build_id bigint, p_status text, p_duration double precision, p_log bytea, p_log_size bigint, p_log_truncated boolean, p_files jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.finish_build(p_build_id bigint, p_status text, p_duration double precision, p_log bytea, p_log_size bigint, p_log_truncated boolean, p_files jsonb) TO piwheels_master;
GRANT ALL ON FUNCTION public.finish_build(p_build_id bigint, p_status text, p_duration double precision, p_log bytea, p_log_size bigint, p_log_truncated boolean, p_files jsonb) TO piwheels_builder;

REVOKE ALL ON FUNCTION public.flag_named(p_packages text[], p_names text[], p_serials bigint[], p_gone text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.flag_named(p_packages text[], p_names text[], p_serials bigint[], p_gone text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.heartbeat_build(p_build_id bigint, p_lease_seconds integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.heartbeat_build(p_build_id bigint, p_lease_seconds integer) TO piwheels_master;
GRANT ALL ON FUNCTION public.heartbeat_build(p_build_id bigint, p_lease_seconds integer) TO piwheels_builder;

GRANT ALL ON FUNCTION public.is_final_status(status text) TO piwheels_master;

REVOKE ALL ON FUNCTION public.load_project_list(p_names text[], p_packages text[], p_serials bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.load_project_list(p_names text[], p_packages text[], p_serials bigint[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.mark_dirty(p_packages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.mark_dirty(p_packages text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.mark_download_pages(p_today date) FROM PUBLIC;
GRANT ALL ON FUNCTION public.mark_download_pages(p_today date) TO piwheels_master;

REVOKE ALL ON FUNCTION public.merge_project_list(p_resync_oldest integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.merge_project_list(p_resync_oldest integer) TO piwheels_master;

REVOKE ALL ON FUNCTION public.package_changed(p_packages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.package_changed(p_packages text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.packages_not_found(p_packages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.packages_not_found(p_packages text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.packages_synced(p_packages text[], p_serials bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.packages_synced(p_packages text[], p_serials bigint[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.record_downloads(p_fingerprint text, p_path text, p_device bigint, p_inode bigint, p_start bigint, p_position bigint, p_tail text, p_lines bigint, p_bad_lines bigint, p_days date[], p_filenames text[], p_counts bigint[], p_dim_days date[], p_dimensions text[], p_values text[], p_dim_counts bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.record_downloads(p_fingerprint text, p_path text, p_device bigint, p_inode bigint, p_start bigint, p_position bigint, p_tail text, p_lines bigint, p_bad_lines bigint, p_days date[], p_filenames text[], p_counts bigint[], p_dim_days date[], p_dimensions text[], p_values text[], p_dim_counts bigint[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.redirty(p_packages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.redirty(p_packages text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.refresh_queue(p_package text, p_version text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.refresh_queue(p_package text, p_version text) TO piwheels_master;

REVOKE ALL ON FUNCTION public.refresh_queue_all() FROM PUBLIC;
GRANT ALL ON FUNCTION public.refresh_queue_all() TO piwheels_master;

REVOKE ALL ON FUNCTION public.register_builder(p_name text, p_abi_tag text, p_platform_tag text, p_python text, p_os_release text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.register_builder(p_name text, p_abi_tag text, p_platform_tag text, p_python text, p_os_release text) TO piwheels_master;
GRANT ALL ON FUNCTION public.register_builder(p_name text, p_abi_tag text, p_platform_tag text, p_python text, p_os_release text) TO piwheels_builder;

REVOKE ALL ON FUNCTION public.requeue_version(p_package text, p_version text, p_target text, p_priority integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.requeue_version(p_package text, p_version text, p_target text, p_priority integer) TO piwheels_master;

REVOKE ALL ON FUNCTION public.set_setting(p_key text, p_value text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.set_setting(p_key text, p_value text) TO piwheels_master;

REVOKE ALL ON FUNCTION public.skip_version(p_package text, p_version text, p_target text, p_note text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.skip_version(p_package text, p_version text, p_target text, p_note text) TO piwheels_master;

GRANT ALL ON FUNCTION public.tag_pyver(tag text) TO piwheels_master;

REVOKE ALL ON FUNCTION public.take_dirty_batch(p_since timestamp with time zone, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.take_dirty_batch(p_since timestamp with time zone, p_limit integer) TO piwheels_master;

REVOKE ALL ON FUNCTION public.targets_named(p_name text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.targets_named(p_name text) TO piwheels_master;
GRANT ALL ON FUNCTION public.targets_named(p_name text) TO piwheels_web;

REVOKE ALL ON FUNCTION public.unskip_version(p_package text, p_version text, p_target text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.unskip_version(p_package text, p_version text, p_target text) TO piwheels_master;

REVOKE ALL ON FUNCTION public.write_upstream_files(p_stale text[], p_filenames text[], p_packages text[], p_versions text[], p_kinds text[], p_urls text[], p_sha256 text[], p_sizes bigint[], p_requires_python text[], p_upload_times timestamp with time zone[], p_yanked boolean[], p_yanked_reasons text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.write_upstream_files(p_stale text[], p_filenames text[], p_packages text[], p_versions text[], p_kinds text[], p_urls text[], p_sha256 text[], p_sizes bigint[], p_requires_python text[], p_upload_times timestamp with time zone[], p_yanked boolean[], p_yanked_reasons text[]) TO piwheels_master;

REVOKE ALL ON FUNCTION public.write_versions(p_packages text[], p_versions text[], p_released timestamp with time zone[], p_yanked boolean[], p_yanked_reasons text[], p_prerelease boolean[], p_deleted boolean[], p_skip_reasons text[], p_requires_python text[], p_python_excluded bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.write_versions(p_packages text[], p_versions text[], p_released timestamp with time zone[], p_yanked boolean[], p_yanked_reasons text[], p_prerelease boolean[], p_deleted boolean[], p_skip_reasons text[], p_requires_python text[], p_python_excluded bigint[]) TO piwheels_master;

GRANT ALL ON TABLE public.build_logs TO piwheels_master;
GRANT SELECT ON TABLE public.build_logs TO piwheels_web;

GRANT ALL ON TABLE public.builders TO piwheels_master;
GRANT SELECT ON TABLE public.builders TO piwheels_web;

GRANT ALL ON SEQUENCE public.builders_builder_id_seq TO piwheels_master;

GRANT ALL ON TABLE public.builds TO piwheels_master;
GRANT SELECT ON TABLE public.builds TO piwheels_web;

GRANT ALL ON SEQUENCE public.builds_build_id_seq TO piwheels_master;

GRANT ALL ON TABLE public.dependencies TO piwheels_master;
GRANT SELECT ON TABLE public.dependencies TO piwheels_web;

GRANT ALL ON TABLE public.download_logs TO piwheels_master;
GRANT SELECT ON TABLE public.download_logs TO piwheels_web;

GRANT ALL ON TABLE public.downloads_by TO piwheels_master;
GRANT SELECT ON TABLE public.downloads_by TO piwheels_web;

GRANT ALL ON TABLE public.downloads_days TO piwheels_master;
GRANT SELECT ON TABLE public.downloads_days TO piwheels_web;

GRANT ALL ON TABLE public.file_downloads TO piwheels_master;
GRANT SELECT ON TABLE public.file_downloads TO piwheels_web;

GRANT ALL ON TABLE public.file_downloads_daily TO piwheels_master;
GRANT SELECT ON TABLE public.file_downloads_daily TO piwheels_web;

GRANT ALL ON TABLE public.files TO piwheels_master;
GRANT SELECT ON TABLE public.files TO piwheels_web;

GRANT ALL ON TABLE public.index_dirty TO piwheels_master;
GRANT SELECT ON TABLE public.index_dirty TO piwheels_web;

GRANT ALL ON TABLE public.package_names TO piwheels_master;
GRANT SELECT ON TABLE public.package_names TO piwheels_web;

GRANT ALL ON TABLE public.packages TO piwheels_master;
GRANT SELECT ON TABLE public.packages TO piwheels_web;

GRANT ALL ON TABLE public.project_downloads TO piwheels_master;
GRANT SELECT ON TABLE public.project_downloads TO piwheels_web;

GRANT ALL ON TABLE public.project_downloads_daily TO piwheels_master;
GRANT SELECT ON TABLE public.project_downloads_daily TO piwheels_web;

GRANT ALL ON TABLE public.queue TO piwheels_master;
GRANT SELECT ON TABLE public.queue TO piwheels_web;

GRANT SELECT ON TABLE public.schema_version TO piwheels_builder;
GRANT SELECT ON TABLE public.schema_version TO piwheels_web;
GRANT ALL ON TABLE public.schema_version TO piwheels_master;

GRANT ALL ON TABLE public.settings TO piwheels_master;

GRANT ALL ON TABLE public.target_skips TO piwheels_master;
GRANT SELECT ON TABLE public.target_skips TO piwheels_web;

GRANT ALL ON TABLE public.targets TO piwheels_master;
GRANT SELECT ON TABLE public.targets TO piwheels_web;

GRANT ALL ON TABLE public.upstream_files TO piwheels_master;
GRANT SELECT ON TABLE public.upstream_files TO piwheels_web;

GRANT ALL ON TABLE public.versions TO piwheels_master;
GRANT SELECT ON TABLE public.versions TO piwheels_web;
