-- The application role (docs/decisions/0022-app-role.md): the app connects as `research_agent_app`, which owns
-- nothing and may not rewrite history. The triggers of 0004 stop UPDATE/DELETE/TRUNCATE on tool_audit for
-- every role, but the table's owner can disable or drop them and a superuser can skip them
-- (`session_replication_role = replica`); neither is the app any more. Migrations run as the owner.
--
-- `research_agent_grant_app(role)` gives a role exactly what the app needs in this schema, and nothing
-- else: SELECT/INSERT/UPDATE/DELETE on the app's tables, SELECT and INSERT only on tool_audit, SELECT only on
-- schema_migrations (the app never applies a migration), USAGE on the sequences. It revokes everything
-- first, so calling it again (`apply_migrations` does after every migration it applies, for the tables
-- later migrations add) converges on that set. Owned by the migrating role; nobody else may execute it.
CREATE FUNCTION research_agent_grant_app(app name DEFAULT 'research_agent_app') RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    target_schema name := current_schema();
    rel record;
    granted text;
BEGIN
    IF app = current_user OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app AND rolsuper) THEN
        RAISE EXCEPTION 'the application role % must be neither a superuser nor the owner that migrates', app;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = target_schema::regnamespace
               AND relowner = (SELECT oid FROM pg_roles WHERE rolname = app)) THEN
        RAISE EXCEPTION 'the application role % owns tables in schema %: it must own none', app, target_schema;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', target_schema, app);
    FOR rel IN
        SELECT c.relname, c.relkind FROM pg_class c
        WHERE c.relnamespace = target_schema::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
        ORDER BY c.relname
    LOOP
        granted := CASE
            WHEN rel.relkind = 'S' THEN 'USAGE, SELECT'
            WHEN rel.relkind IN ('v', 'm') THEN 'SELECT'
            WHEN rel.relname = 'tool_audit' THEN 'SELECT, INSERT'  -- append-only: the record of every tool decision
            WHEN rel.relname = 'schema_migrations' THEN 'SELECT'
            ELSE 'SELECT, INSERT, UPDATE, DELETE'
        END;
        EXECUTE format('REVOKE ALL ON %s %I.%I FROM %I',
                       CASE WHEN rel.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, target_schema, rel.relname, app);
        EXECUTE format('GRANT %s ON %s %I.%I TO %I', granted,
                       CASE WHEN rel.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, target_schema, rel.relname, app);
    END LOOP;
END;
$$;

REVOKE ALL ON FUNCTION research_agent_grant_app(name) FROM PUBLIC;

-- The role itself is a cluster-wide object: created here when the migrating role may create roles (the
-- embedded server's superuser does; so may a DATABASE_URL owner with CREATEROLE), with LOGIN and no
-- password, so it signs in only where pg_hba.conf trusts the connection (the embedded server's private
-- socket). Otherwise agent/durable/sql/app_role.sql creates it. Two databases migrating at once on one
-- server may both try: the loser finds it created.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'research_agent_app')
       AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            CREATE ROLE research_agent_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'research_agent_app' AND NOT rolsuper)
       AND current_user <> 'research_agent_app' THEN
        PERFORM research_agent_grant_app('research_agent_app');
    END IF;
END;
$$;
