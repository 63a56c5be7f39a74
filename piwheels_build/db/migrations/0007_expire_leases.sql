-- 0007: an expired lease is seen without a claim.
--
-- A builder that dies mid-build leaves its build 'building' and its queue row
-- held. Until now only claim_build() released such leases, so with no builder
-- claiming, the dead build showed as building for ever. expire_leases() is
-- the same sweep (moved here from 0002's release_expired_leases(), which is
-- dropped), callable by the master: the index writer runs it at the start of
-- every run and `piwheels status` before it counts, and claim_build() still
-- runs it before each claim. It also marks the packages dirty, so their
-- project pages say 'abandoned' on the index writer's next run.

-- Leases that ran out: their queue rows go back to the queue (build_id and
-- lease cleared), their builds are marked abandoned, their packages dirty.
-- Returns the rows released. A build whose row a finish_build holds is
-- skipped (that finish records it as abandoned itself), so the two never wait
-- on each other.
CREATE FUNCTION expire_leases()
RETURNS TABLE (build_id bigint, package text, version text, abi_tag text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    pkgs text[];
    vers text[];
    tags text[];
BEGIN
    WITH expired AS (
        SELECT q.package, q.version, q.abi_tag, q.build_id FROM queue q
        JOIN builds b ON b.build_id = q.build_id
        WHERE q.build_id IS NOT NULL AND q.lease_expires < now()
        FOR UPDATE OF q, b SKIP LOCKED
    ), released AS (
        UPDATE queue q SET build_id = NULL, lease_expires = NULL
        FROM expired e
        WHERE q.package = e.package AND q.version = e.version AND q.abi_tag = e.abi_tag
        RETURNING e.build_id, e.package, e.version, e.abi_tag
    ), abandoned AS (
        UPDATE builds b SET status = 'abandoned', finished_at = now()
        FROM released r WHERE b.build_id = r.build_id AND b.status = 'building'
    )
    SELECT array_agg(r.build_id), array_agg(r.package), array_agg(r.version),
           array_agg(r.abi_tag)
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

-- claim_build as in 0002, sweeping through expire_leases().
CREATE OR REPLACE FUNCTION claim_build(p_builder_id integer, p_lease_seconds integer DEFAULT 300)
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
    PERFORM expire_leases();
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


DROP FUNCTION release_expired_leases();
