-- research-agent: an application role on a PostgreSQL server of your own (DATABASE_URL).
--
-- The app should not connect as a superuser or as the owner of its tables: either can switch off the
-- triggers that keep `tool_audit` append-only (a superuser with `SET session_replication_role = replica`,
-- the owner with `ALTER TABLE ... DISABLE TRIGGER` or `DROP TRIGGER`) and then rewrite the audit trail.
-- This file creates `research_agent_app`: LOGIN, no superuser, no CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS,
-- owning nothing, with SELECT/INSERT/UPDATE/DELETE on the app's tables, USAGE on their sequences, and only
-- SELECT and INSERT on tool_audit (SELECT only on schema_migrations). See docs/decisions/0022-app-role.md.
--
-- 1. Migrate as the role that owns (or will own) the tables, once and again after every upgrade:
--        DATABASE_URL='postgresql://OWNER:...@HOST/DB' research-agent db check
--    (it applies the migrations, then warns that it is connected as the owner: right for migrating only).
-- 2. As that owner (it needs CREATEROLE, or a superuser runs this), create the role and grant it:
--        psql 'postgresql://OWNER:...@HOST/DB' -v app_password='a long random secret' -f app_role.sql
--    `research-agent db check` prints where this file is installed. It is idempotent: run it again to
--    change the password. Steps 1 and 2 may come in either order.
-- 3. Run the app (workers, `ask`, every command) as the role; `research-agent db check` then warns of nothing:
--        DATABASE_URL='postgresql://research_agent_app:SECRET@HOST/DB' research-agent worker
--
-- Later migrations re-grant to research_agent_app by themselves (tables they add included), but the app
-- role may not apply them: after an upgrade, step 1 again. To sign in under another name, keep this role
-- and `GRANT research_agent_app TO your_login;` (a NOLOGIN role may hold the grants just as well).
-- The owner and any superuser remain trusted: they can rewrite anything, so keep their credentials away
-- from the app.

\set ON_ERROR_STOP on

SELECT 'CREATE ROLE research_agent_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'research_agent_app')
\gexec

ALTER ROLE research_agent_app LOGIN PASSWORD :'app_password';

-- The grants live in one place, the function migration 0010 installs; until the migrations have run there
-- is nothing to grant, and migration 0010 grants to this role when it runs.
SELECT 'SELECT research_agent_grant_app(''research_agent_app'')'
WHERE to_regprocedure('research_agent_grant_app(name)') IS NOT NULL
\gexec
