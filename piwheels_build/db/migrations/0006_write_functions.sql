-- 0006: one write path on the master, and the farm's numbers in one place.
--
-- Every write that sync, the operator's actions and the index writer make is
-- a function here (the builders' are in 0002/0004), each with its grant
-- beside it, and Python calls each through one thin wrapper
-- (piwheels_build/queue.py for the queue's, piwheels_build/db/writes.py for
-- the others). Sync's functions take arrays, one element per row, so a group
-- of projects stays a fixed handful of statements whatever its size. They
-- are SECURITY DEFINER like the builders' and executable by piwheels_master
-- only. farm_stats() is a reader (SECURITY INVOKER): `piwheels status`, the
-- Ansible queue facts and the stats page all count through it.


-- Settings -----------------------------------------------------------------

-- Store one setting; true when its value changed.
CREATE FUNCTION set_setting(p_key text, p_value text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO settings (key, value) VALUES (p_key, p_value)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
    WHERE settings.value IS DISTINCT FROM EXCLUDED.value;
    RETURN FOUND;
END $$;
REVOKE EXECUTE ON FUNCTION set_setting(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION set_setting(text, text) TO piwheels_master;


-- The index writer's queue: index_dirty ------------------------------------

-- Mark packages for the index writer. DO UPDATE (not DO NOTHING) locks the
-- row, so a writer taking it either waits for this transaction or sees the
-- package again next run.
CREATE FUNCTION mark_dirty(p_packages text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO index_dirty (package) SELECT unnest(p_packages)
    ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since
$$;
REVOKE EXECUTE ON FUNCTION mark_dirty(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mark_dirty(text[]) TO piwheels_master;

-- Up to p_limit packages marked at or before p_since, taken (deleted) in the
-- caller's transaction: a finish_build marking one of them again waits for
-- the caller's commit and marks it anew. Rows another writer holds are left.
CREATE FUNCTION take_dirty_batch(p_since timestamptz, p_limit integer) RETURNS SETOF text
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DELETE FROM index_dirty WHERE package IN (
        SELECT package FROM index_dirty WHERE since <= p_since
        ORDER BY package LIMIT p_limit FOR UPDATE SKIP LOCKED)
    RETURNING package
$$;
REVOKE EXECUTE ON FUNCTION take_dirty_batch(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION take_dirty_batch(timestamptz, integer) TO piwheels_master;

-- Unmark packages whose pages a full run is writing.
CREATE FUNCTION clear_dirty(p_packages text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DELETE FROM index_dirty WHERE package = ANY (p_packages)
$$;
REVOKE EXECUTE ON FUNCTION clear_dirty(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION clear_dirty(text[]) TO piwheels_master;

-- Mark again, for the next run, packages with a build in flight (its finish
-- may not be visible yet); a mark already there is kept as it is.
CREATE FUNCTION redirty(p_packages text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO index_dirty (package, since) SELECT unnest(p_packages), clock_timestamp()
    ON CONFLICT DO NOTHING
$$;
REVOKE EXECUTE ON FUNCTION redirty(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION redirty(text[]) TO piwheels_master;


-- The queue: what sync and operators change --------------------------------

-- Packages whose rows changed: refresh their queue rows and mark them for
-- the index writer. Returns the queue rows added.
CREATE FUNCTION package_changed(p_packages text[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    added integer;
BEGIN
    SELECT coalesce(sum(refresh_queue(p)), 0) INTO added FROM unnest(p_packages) AS p;
    PERFORM mark_dirty(p_packages);
    RETURN added;
END $$;
REVOKE EXECUTE ON FUNCTION package_changed(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION package_changed(text[]) TO piwheels_master;

-- An operator's skip of a whole package (p_version NULL), a version, or a
-- version on one ABI (p_abi_tag). False, changing nothing, when it is
-- skipped already (by anyone: an operator's skip never overrides sync's).
CREATE FUNCTION skip_version(p_package text, p_version text DEFAULT NULL,
                             p_abi_tag text DEFAULT NULL, p_note text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_abi_tag IS NOT NULL THEN
        INSERT INTO abi_skips (package, version, abi_tag, reason, note)
        VALUES (p_package, p_version, p_abi_tag, 'admin', p_note)
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

-- Undo skip_version: a package's skip (any note), a version's 'admin' skip
-- (sync's reasons stay), a version's skip on one ABI (any reason).
CREATE FUNCTION unskip_version(p_package text, p_version text DEFAULT NULL,
                               p_abi_tag text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_abi_tag IS NOT NULL THEN
        DELETE FROM abi_skips
        WHERE package = p_package AND version = p_version AND abi_tag = p_abi_tag;
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

-- An operator's rebuild of a version (on one ABI, or all): forget its failed
-- attempts that left no file, its ABI skips, an 'admin' or
-- 'too-many-failures' skip and a waiting retry; queue it again, with
-- p_priority when not 0. forgotten counts the rows forgotten, added the
-- queue rows added, reprioritised the rows given the priority; queued is the
-- ABIs now queued (or building).
CREATE FUNCTION requeue_version(p_package text, p_version text, p_abi_tag text DEFAULT NULL,
                                p_priority integer DEFAULT 0)
RETURNS TABLE (forgotten integer, added integer, reprioritised integer, queued text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM builds b
    WHERE b.package = p_package AND b.version = p_version
      AND (p_abi_tag IS NULL OR b.abi_tag = p_abi_tag)
      AND b.status NOT IN ('success', 'building')
      AND NOT EXISTS (SELECT 1 FROM files f WHERE f.build_id = b.build_id);
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    DELETE FROM abi_skips s
    WHERE s.package = p_package AND s.version = p_version
      AND (p_abi_tag IS NULL OR s.abi_tag = p_abi_tag);
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
      AND (p_abi_tag IS NULL OR q.abi_tag = p_abi_tag);
    GET DIAGNOSTICS n = ROW_COUNT;
    forgotten := forgotten + n;
    added := refresh_queue(p_package, p_version);
    reprioritised := 0;
    IF coalesce(p_priority, 0) <> 0 THEN
        UPDATE queue q SET priority = p_priority
        WHERE q.package = p_package AND q.version = p_version
          AND (p_abi_tag IS NULL OR q.abi_tag = p_abi_tag) AND q.priority <> p_priority;
        GET DIAGNOSTICS reprioritised = ROW_COUNT;
    END IF;
    SELECT coalesce(array_agg(q.abi_tag ORDER BY q.abi_tag), '{}') INTO queued
    FROM queue q
    WHERE q.package = p_package AND q.version = p_version
      AND (p_abi_tag IS NULL OR q.abi_tag = p_abi_tag);
    IF forgotten > 0 THEN
        PERFORM mark_dirty(ARRAY[p_package]);
    END IF;
    RETURN NEXT;
END $$;
REVOKE EXECUTE ON FUNCTION requeue_version(text, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION requeue_version(text, text, text, integer) TO piwheels_master;


-- Sync: packages and their spellings ---------------------------------------

-- New packages (p_serials may be NULL: no serial known); the ones added.
CREATE FUNCTION add_packages(p_packages text[], p_display_names text[],
                             p_serials bigint[] DEFAULT NULL)
RETURNS SETOF text
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO packages (package, display_name, upstream_serial)
    SELECT * FROM unnest(p_packages, p_display_names, p_serials)
    ON CONFLICT (package) DO NOTHING
    RETURNING package
$$;
REVOKE EXECUTE ON FUNCTION add_packages(text[], text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION add_packages(text[], text[], bigint[]) TO piwheels_master;

-- Spellings seen upstream (name -> package); known ones are left as they are.
CREATE FUNCTION add_package_names(p_names text[], p_packages text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO package_names (name, package)
    SELECT n.name, n.package FROM unnest(p_names, p_packages) AS n(name, package)
    WHERE NOT EXISTS (SELECT 1 FROM package_names x WHERE x.name = n.name)
    ON CONFLICT (name) DO NOTHING
$$;
REVOKE EXECUTE ON FUNCTION add_package_names(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION add_package_names(text[], text[]) TO piwheels_master;

-- The packages a changelog names: add the new ones (p_packages, their
-- spellings and serials) and flag all of them for sync, with the serial
-- raised; p_gone (removed or renamed away) are flagged when not deleted
-- already (their page decides). Returns how many were new.
CREATE FUNCTION flag_named(p_packages text[], p_names text[], p_serials bigint[],
                           p_gone text[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
REVOKE EXECUTE ON FUNCTION flag_named(text[], text[], bigint[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flag_named(text[], text[], bigint[], text[]) TO piwheels_master;

-- The full project list, loaded a batch at a time into a temporary table
-- of the transaction (names as listed, normalized, serials or NULL), then
-- merged by merge_project_list().
CREATE FUNCTION load_project_list(p_names text[], p_packages text[], p_serials bigint[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF to_regclass('pg_temp.sync_list') IS NULL THEN
        CREATE TEMP TABLE sync_list (name text NOT NULL, package text NOT NULL, serial bigint)
        ON COMMIT DROP;
    END IF;
    INSERT INTO pg_temp.sync_list SELECT * FROM unnest(p_names, p_packages, p_serials);
END $$;
REVOKE EXECUTE ON FUNCTION load_project_list(text[], text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION load_project_list(text[], text[], bigint[]) TO piwheels_master;

-- Merge the loaded list: new packages and spellings; changed serials,
-- reappeared packages and new spellings flagged; packages no longer listed
-- deleted (their queue rows go, their pages change); without serials, the
-- p_resync_oldest longest-unsynced packages flagged; the time noted
-- (settings 'full_list_at', ISO 8601 UTC). Returns how many packages are
-- new and how many are gone.
CREATE FUNCTION merge_project_list(p_resync_oldest integer DEFAULT 0)
RETURNS TABLE (new_packages integer, gone_packages integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
REVOKE EXECUTE ON FUNCTION merge_project_list(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION merge_project_list(integer) TO piwheels_master;


-- Sync: a group of fetched project pages -----------------------------------

-- Project pages that answered 404: the packages are deleted (not flagged).
CREATE FUNCTION packages_not_found(p_packages text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE packages SET deleted = true, needs_sync = false, synced_at = now()
    WHERE package = ANY (p_packages)
$$;
REVOKE EXECUTE ON FUNCTION packages_not_found(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION packages_not_found(text[]) TO piwheels_master;

-- Project pages written: the serial each page was served at (NULL: the one
-- the list announced). A page older than the serial the list or changelog
-- announced (a stale cache in front of the upstream) leaves the package
-- flagged for the next run.
CREATE FUNCTION packages_synced(p_packages text[], p_serials bigint[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE packages p SET synced_serial = coalesce(v.serial, p.upstream_serial),
           synced_at = now(), deleted = false,
           needs_sync = coalesce(v.serial < p.upstream_serial, false)
    FROM unnest(p_packages, p_serials) AS v(package, serial)
    WHERE p.package = v.package
$$;
REVOKE EXECUTE ON FUNCTION packages_synced(text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION packages_synced(text[], bigint[]) TO piwheels_master;

-- New or changed version rows (one array element per row).
CREATE FUNCTION write_versions(p_packages text[], p_versions text[], p_released timestamptz[],
                               p_yanked boolean[], p_yanked_reasons text[],
                               p_prerelease boolean[], p_deleted boolean[],
                               p_skip_reasons text[])
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO versions (package, version, released, yanked, yanked_reason, prerelease,
                          deleted, skip_reason)
    SELECT * FROM unnest(p_packages, p_versions, p_released, p_yanked, p_yanked_reasons,
                         p_prerelease, p_deleted, p_skip_reasons)
    ON CONFLICT (package, version) DO UPDATE SET released = EXCLUDED.released,
        yanked = EXCLUDED.yanked, yanked_reason = EXCLUDED.yanked_reason,
        prerelease = EXCLUDED.prerelease, deleted = EXCLUDED.deleted,
        skip_reason = EXCLUDED.skip_reason
$$;
REVOKE EXECUTE ON FUNCTION write_versions(text[], text[], timestamptz[], boolean[], text[],
                                          boolean[], boolean[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION write_versions(text[], text[], timestamptz[], boolean[], text[],
                                         boolean[], boolean[], text[]) TO piwheels_master;

-- Upstream files: p_stale (no longer listed) go, the new or changed ones
-- (one array element per row) are written.
CREATE FUNCTION write_upstream_files(p_stale text[], p_filenames text[], p_packages text[],
                                     p_versions text[], p_kinds text[], p_urls text[],
                                     p_sha256 text[], p_sizes bigint[],
                                     p_requires_python text[], p_upload_times timestamptz[],
                                     p_yanked boolean[], p_yanked_reasons text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
REVOKE EXECUTE ON FUNCTION write_upstream_files(text[], text[], text[], text[], text[], text[],
                                                text[], bigint[], text[], timestamptz[],
                                                boolean[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION write_upstream_files(text[], text[], text[], text[], text[], text[],
                                               text[], bigint[], text[], timestamptz[],
                                               boolean[], text[]) TO piwheels_master;


-- The farm's numbers -------------------------------------------------------

-- Everything `piwheels status`, the Ansible queue facts and the stats page
-- show, as one JSON document (rows as lists of objects, in display order).
-- The distinct counts (versions attempted and built, packages with files)
-- sort whole tables; p_detail = false (status) leaves them out (0).
CREATE FUNCTION farm_stats(p_detail boolean DEFAULT true) RETURNS jsonb
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
    'attempted', (SELECT count(*) FROM (SELECT DISTINCT b.package, b.version FROM builds b
                                        WHERE p_detail AND is_final_status(b.status)) a),
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
    'index_dirty', (SELECT count(*) FROM index_dirty)
)
$$;
REVOKE EXECUTE ON FUNCTION farm_stats(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION farm_stats(boolean) TO piwheels_master, piwheels_web;
