-- 0009: downloads, read from the web server's access logs.
--
-- `piwheels downloads` (piwheels_build/downloads/) reads nginx's or `piwheels
-- serve`'s access log (the combined format) incrementally and adds what it
-- read with record_downloads(): the counts and the log's new position in one
-- call, so in one transaction: a run killed before its commit leaves both as
-- they were, and nothing is counted twice. Aggregates only, never a row per
-- download: per day and file, per file all time, per day and project (with the build time the
-- downloads saved), per project all time, per day farm-wide, and per day by
-- one client dimension at a time (installer, python, implementation,
-- platform, distro) from pip's and uv's User-Agent.

-- One row per log file ever read, keyed by its content: the sha256 of its
-- first line (a log's first line carries its first request's time and
-- client). A renamed file (access.log -> access.log.1) or its gzipped copy
-- (access.log.2.gz) has the same first line, so it goes on from `position`
-- (bytes of the uncompressed text) and nothing is read twice; a new file
-- (a new inode, or the same inode truncated and written again) has another
-- first line and starts at 0. tail_sha256 is the sha256 of the (up to) 256
-- bytes before `position`: a file that shares a first line but not those
-- bytes is another log (a synthetic one), keyed instead by the sha256 of its
-- first 2 lines, or 3, ... up to 8 (piwheels_build/downloads/reader.py).
-- Device, inode and path are where it was last seen, for people.
CREATE TABLE download_logs (
    fingerprint text PRIMARY KEY CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    path text NOT NULL,
    device bigint,
    inode bigint,
    position bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    tail_sha256 text,
    lines bigint NOT NULL DEFAULT 0,
    bad_lines bigint NOT NULL DEFAULT 0,
    downloads bigint NOT NULL DEFAULT 0,
    first_read_at timestamptz NOT NULL DEFAULT now(),
    read_at timestamptz NOT NULL DEFAULT now()
);

-- Downloads per UTC day and file name (the name in the URL: an alias counts
-- under its own name). package is NULL for a file the files table does not
-- know (counted apart: not a project's).
CREATE TABLE file_downloads_daily (
    day date NOT NULL,
    filename text NOT NULL,
    package text,
    downloads bigint NOT NULL,
    PRIMARY KEY (day, filename)
);

-- Per file, all time: what a project page shows beside each file (a probe
-- per file).
CREATE TABLE file_downloads (
    filename text PRIMARY KEY,
    package text,
    downloads bigint NOT NULL
);

-- Per project and day: what its page's "last 30 days" sums (at most 30 rows
-- of one project: an index probe), and the build time those downloads saved
-- (each download times the duration of the build that made the file).
CREATE TABLE project_downloads_daily (
    package text NOT NULL,
    day date NOT NULL,
    downloads bigint NOT NULL,
    seconds_saved double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (package, day)
);
-- The daily refresh of project pages finds a day's projects by the day.
CREATE INDEX project_downloads_daily_day ON project_downloads_daily (day);

-- Per project, all time; the top projects are an index walk of `downloads`.
CREATE TABLE project_downloads (
    package text PRIMARY KEY,
    downloads bigint NOT NULL,
    seconds_saved double precision NOT NULL DEFAULT 0
);
CREATE INDEX project_downloads_top ON project_downloads (downloads DESC);

-- Farm-wide per day: downloads of known files, of unknown ones, time saved.
-- The stats page's totals sum these (one row a day).
CREATE TABLE downloads_days (
    day date PRIMARY KEY,
    downloads bigint NOT NULL DEFAULT 0,
    unknown bigint NOT NULL DEFAULT 0,
    seconds_saved double precision NOT NULL DEFAULT 0
);

-- Per day, the downloads (known and unknown files) by one client dimension:
-- 'installer' ("pip 24.0", "uv 0.5.1", "other"), 'python' ("3.11"),
-- 'implementation' ("CPython"), 'platform' ("Linux armv7l"), 'distro'
-- ("Raspbian GNU/Linux 12"); "unknown" when the User-Agent does not say.
-- Each dimension's values sum to the day's downloads.
CREATE TABLE downloads_by (
    day date NOT NULL,
    dimension text NOT NULL CHECK (dimension IN ('installer', 'python', 'implementation',
                                                 'platform', 'distro')),
    value text NOT NULL,
    downloads bigint NOT NULL,
    PRIMARY KEY (day, dimension, value)
);

GRANT ALL ON download_logs, file_downloads_daily, file_downloads, project_downloads_daily,
    project_downloads, downloads_days, downloads_by TO piwheels_master;
GRANT SELECT ON download_logs, file_downloads_daily, file_downloads, project_downloads_daily,
    project_downloads, downloads_days, downloads_by TO piwheels_web;


-- Add what one stretch of a log held and move the log's position, at once.
-- p_start is the position the reader started from: if the stored position
-- is not that (another reader got there first), nothing is added and NULL is
-- returned, so two readers of one log never count a line twice. Otherwise
-- {"packages": the projects whose counts changed, "unknown": downloads of
-- files the files table does not know}. Downloads come as (day, file name,
-- count) columns, the client dimensions as (day, dimension, value, count).
CREATE FUNCTION record_downloads(
    p_fingerprint text, p_path text, p_device bigint, p_inode bigint,
    p_start bigint, p_position bigint, p_tail text, p_lines bigint, p_bad_lines bigint,
    p_days date[], p_filenames text[], p_counts bigint[],
    p_dim_days date[], p_dimensions text[], p_values text[], p_dim_counts bigint[])
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
REVOKE EXECUTE ON FUNCTION record_downloads(text, text, bigint, bigint, bigint, bigint, text,
    bigint, bigint, date[], text[], bigint[], date[], text[], text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_downloads(text, text, bigint, bigint, bigint, bigint, text,
    bigint, bigint, date[], text[], bigint[], date[], text[], text[], bigint[])
    TO piwheels_master;

-- Project pages show downloads over the last 30 days (p_today - 29 ..
-- p_today) and all time, refreshed once a day rather than on every read of
-- the logs (a poll would otherwise rewrite every downloaded project's page):
-- on a new day, the projects downloaded the day before (their counts grew
-- since their pages were written) or on the day that just left the window
-- (their 30-day count fell) are marked for the index writer. Two index
-- probes by day. Returns how many were marked.
CREATE FUNCTION mark_download_pages(p_today date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
REVOKE EXECUTE ON FUNCTION mark_download_pages(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mark_download_pages(date) TO piwheels_master;
