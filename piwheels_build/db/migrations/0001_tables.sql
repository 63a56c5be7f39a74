-- 0001: the tables. PostgreSQL is the single source of truth; every part
-- reads and writes only these. Names are PEP 503 normalized everywhere.

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO settings (key, value) VALUES
    ('retry_limit', '5'),          -- infrastructure failures before giving up
    ('retry_delay', '60'),         -- seconds before the first retry, doubled each time
    ('upstream_serial', '0');      -- last changelog serial seen upstream

CREATE TABLE packages (
    package         text PRIMARY KEY
                    CHECK (package ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
    display_name    text NOT NULL,
    skip_reason     text,          -- an operator's decision to skip the whole package
    deleted         boolean NOT NULL DEFAULT false,
    upstream_serial bigint,        -- _last-serial the project list reported
    synced_serial   bigint,        -- serial of the project page last synced
    needs_sync      boolean NOT NULL DEFAULT true,
    synced_at       timestamptz,
    added_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX packages_needs_sync ON packages (package) WHERE needs_sync;
CREATE INDEX packages_synced_at ON packages (synced_at) WHERE NOT deleted;

-- Every spelling of a name seen upstream ("Foo_Bar.baz" -> "foo-bar-baz").
CREATE TABLE package_names (
    name     text PRIMARY KEY,
    package  text NOT NULL REFERENCES packages ON DELETE CASCADE,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX package_names_package ON package_names (package);

CREATE TABLE versions (
    package       text NOT NULL REFERENCES packages ON DELETE CASCADE,
    version       text NOT NULL,
    released      timestamptz NOT NULL DEFAULT now(),
    yanked        boolean NOT NULL DEFAULT false,
    yanked_reason text,
    prerelease    boolean NOT NULL DEFAULT false,
    deleted       boolean NOT NULL DEFAULT false,
    skip_reason   text CHECK (skip_reason IN
                  ('binary-only', 'deleted', 'yanked', 'admin', 'too-many-failures')),
    skip_note     text,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, version)
);
CREATE INDEX versions_released ON versions (released DESC);

CREATE TABLE upstream_files (
    filename        text PRIMARY KEY,
    package         text NOT NULL,
    version         text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('sdist', 'wheel', 'other')),
    url             text NOT NULL,
    sha256          text,
    size            bigint,
    requires_python text,
    upload_time     timestamptz,
    yanked          boolean NOT NULL DEFAULT false,
    yanked_reason   text,
    FOREIGN KEY (package, version) REFERENCES versions ON DELETE CASCADE
);
CREATE INDEX upstream_files_version ON upstream_files (package, version);

-- One ABI per OS release group of builders (cp311 on bookworm, cp313 on trixie).
CREATE TABLE abis (
    abi_tag   text PRIMARY KEY,
    py_major  integer NOT NULL,
    py_minor  integer NOT NULL,
    active    boolean NOT NULL DEFAULT true,
    added_at  timestamptz NOT NULL DEFAULT now()
);

-- A builder is one interpreter on one machine.
CREATE TABLE builders (
    builder_id   serial PRIMARY KEY,
    name         text NOT NULL,
    abi_tag      text NOT NULL REFERENCES abis,
    platform_tag text NOT NULL,
    python       text NOT NULL,
    os_release   text,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, abi_tag)
);

CREATE TABLE builds (
    build_id    bigserial PRIMARY KEY,
    package     text NOT NULL,
    version     text NOT NULL,
    abi_tag     text NOT NULL REFERENCES abis,
    builder_id  integer NOT NULL REFERENCES builders,
    status      text NOT NULL DEFAULT 'building' CHECK (status IN
                ('building', 'success', 'failed', 'timeout', 'out-of-memory',
                 'missing-build-dependency', 'infrastructure', 'abandoned')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    duration    double precision,      -- seconds spent building
    FOREIGN KEY (package, version) REFERENCES versions ON DELETE CASCADE
);
CREATE INDEX builds_version ON builds (package, version, abi_tag);
CREATE INDEX builds_builder ON builds (builder_id);

-- Build output, gzip-compressed, capped by the builder (head and tail kept).
CREATE TABLE build_logs (
    build_id  bigint PRIMARY KEY REFERENCES builds ON DELETE CASCADE,
    log       bytea NOT NULL,
    size      bigint NOT NULL,         -- uncompressed bytes the build printed
    truncated boolean NOT NULL DEFAULT false
);

CREATE TABLE files (
    filename        text PRIMARY KEY,
    build_id        bigint NOT NULL REFERENCES builds ON DELETE CASCADE,
    package         text NOT NULL,
    version         text NOT NULL,
    python_tag      text NOT NULL,
    abi_tag         text NOT NULL,
    platform_tag    text NOT NULL,
    size            bigint NOT NULL,
    sha256          text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    requires_python text,
    metadata_sha256 text,
    alias_of        text REFERENCES files ON DELETE CASCADE,   -- armv6l symlink of an armv7l wheel
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (package, version) REFERENCES versions ON DELETE CASCADE
);
CREATE INDEX files_version ON files (package, version);
CREATE INDEX files_build ON files (build_id);
CREATE INDEX files_alias ON files (alias_of) WHERE alias_of IS NOT NULL;

-- What a wheel needs: 'pip' (Requires-Dist), 'apt' (Debian package of a linked library).
CREATE TABLE dependencies (
    filename   text NOT NULL REFERENCES files ON DELETE CASCADE,
    tool       text NOT NULL CHECK (tool IN ('pip', 'apt', 'lib')),
    dependency text NOT NULL,
    PRIMARY KEY (filename, tool, dependency)
);

-- A (version, ABI) that will not be built, and why: too many infrastructure
-- failures, or an operator's decision for one ABI.
CREATE TABLE abi_skips (
    package  text NOT NULL,
    version  text NOT NULL,
    abi_tag  text NOT NULL REFERENCES abis,
    reason   text NOT NULL CHECK (reason IN ('too-many-failures', 'admin')),
    note     text,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, version, abi_tag),
    FOREIGN KEY (package, version) REFERENCES versions ON DELETE CASCADE
);

-- The build queue: one row per (version, ABI) still to build. build_id is set
-- while a builder holds the lease; an expired lease goes back to the queue.
CREATE TABLE queue (
    package       text NOT NULL,
    version       text NOT NULL,
    abi_tag       text NOT NULL REFERENCES abis,
    released      timestamptz NOT NULL,
    priority      integer NOT NULL DEFAULT 0,
    not_before    timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    build_id      bigint REFERENCES builds ON DELETE SET NULL,
    lease_expires timestamptz,
    queued_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, version, abi_tag),
    FOREIGN KEY (package, version) REFERENCES versions ON DELETE CASCADE
);
CREATE INDEX queue_next ON queue (abi_tag, priority DESC, released DESC) WHERE build_id IS NULL;
CREATE INDEX queue_leases ON queue (lease_expires) WHERE build_id IS NOT NULL;
CREATE UNIQUE INDEX queue_build ON queue (build_id) WHERE build_id IS NOT NULL;

-- Packages whose index pages must be rewritten (filled by finish_build and sync).
CREATE TABLE index_dirty (
    package text PRIMARY KEY,
    since   timestamptz NOT NULL DEFAULT now()
);
