-- 0003: separate roles. The master owns everything; a builder may only call
-- the functions it needs (it never sees a table); the web side reads.
-- Roles are per cluster, so create them only when missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'piwheels_master') THEN
        CREATE ROLE piwheels_master NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'piwheels_builder') THEN
        CREATE ROLE piwheels_builder NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'piwheels_web') THEN
        CREATE ROLE piwheels_web NOLOGIN;
    END IF;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tag_pyver(text), is_final_status(text) TO PUBLIC;

GRANT USAGE ON SCHEMA public TO piwheels_master, piwheels_builder, piwheels_web;
GRANT SELECT ON schema_version TO piwheels_builder, piwheels_web;
GRANT ALL ON ALL TABLES IN SCHEMA public TO piwheels_master;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO piwheels_master;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO piwheels_master;

GRANT EXECUTE ON FUNCTION
    register_builder(text, text, text, text, text),
    claim_build(integer, integer),
    heartbeat_build(bigint, integer),
    finish_build(bigint, text, double precision, bytea, bigint, boolean, jsonb),
    file_is_recorded(text)
TO piwheels_builder;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO piwheels_web;
REVOKE SELECT ON settings FROM piwheels_web;
