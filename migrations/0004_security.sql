-- Security (issue #8): the audit trail, login throttling, account bookkeeping.
--
-- The server's own database role (command/db_roles.py) gets SELECT and
-- INSERT on audit_log and nothing more; the triggers below refuse UPDATE,
-- DELETE and TRUNCATE to every role besides, the owner included, so only
-- DDL by the owner (which the server's role cannot do) could undo them.

-- Demo accounts (`emergency up`, `emergency seed-demo`) are marked, so a
-- production server can refuse to start while one is still enabled.
ALTER TABLE users ADD COLUMN demo boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;

-- Why a session ended early: logout, password_changed, role_changed, disabled...
ALTER TABLE sessions ADD COLUMN revoked_reason text CHECK (length(revoked_reason) <= 64);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Failed logins, for the rate limit (command/login_limit.py). In the
-- database, not in memory, so the limit holds across instances and
-- restarts. Rows older than the window are pruned; they carry no evidence
-- the audit log does not also keep.
CREATE TABLE login_failures (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    -- As typed (at most 64 characters kept), whether or not such a user exists.
    username    text NOT NULL CHECK (length(username) <= 64),
    address     text NOT NULL CHECK (length(address) <= 64)
);
CREATE INDEX login_failures_username ON login_failures (username, at);
CREATE INDEX login_failures_address ON login_failures (address, at);
CREATE INDEX login_failures_at ON login_failures (at);

-- Who did what, when, from where, and how it ended (command/audit.py).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    -- clock_timestamp, not now(): rows of one long transaction keep their order in time.
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The account's name (or what was typed at a failed login); null when nobody signed in.
    actor       text CHECK (length(actor) <= 64),
    actor_role  text,
    action      text NOT NULL CHECK (action ~ '^[a-z][a-z_]*(\.[a-z_]+)+$'),
    -- What it was done to: 'incident:42', 'dispatch:7', 'user:3', 'import:units'.
    target      text CHECK (length(target) <= 200),
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'failed', 'denied', 'error')),
    -- The HTTP status answered (null for the command line).
    status      integer CHECK (status BETWEEN 100 AND 599),
    -- The client's address (X-Forwarded-For only from a trusted proxy), or 'local'.
    address     text CHECK (length(address) <= 64),
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE INDEX audit_log_action ON audit_log (action, at);

-- UPDATE and TRUNCATE are always refused. DELETE only for rows past the
-- legal minimum (183 days) and only inside prune_audit_log(), which says so
-- with a transaction-local setting. Anyone may set that setting, but it
-- gives nothing to a role without DELETE on the table (the server's), and
-- never reaches a row younger than six months.
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('emergency.audit_prune', true) = 'on'
       AND OLD.at < now() - interval '183 days' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- The time is the database's, whatever the inserter says: a row cannot be
-- back-dated into the prunable past, nor dated ahead.
CREATE FUNCTION audit_log_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_stamp BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_stamp();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

-- Retention: delete audit rows older than keep_days (at least 183). Runs
-- with its owner's rights (SECURITY DEFINER), so the server's role, which
-- has no DELETE on audit_log, may be granted EXECUTE on this and nothing
-- more (command/db_roles.py does): the worst it can then do is prune what
-- is past six months anyway. The search path is pinned, as for every
-- SECURITY DEFINER function, so a caller cannot substitute objects.
CREATE FUNCTION prune_audit_log(keep_days integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    gone bigint;
BEGIN
    IF keep_days IS NULL OR keep_days < 183 THEN
        RAISE EXCEPTION 'audit rows are kept at least 183 days, not %', keep_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('emergency.audit_prune', 'on', true);
    DELETE FROM public.audit_log WHERE at < now() - make_interval(days => keep_days);
    GET DIAGNOSTICS gone = ROW_COUNT;
    PERFORM set_config('emergency.audit_prune', 'off', true);
    RETURN gone;
END
$$;
REVOKE ALL ON FUNCTION prune_audit_log(integer) FROM PUBLIC;

-- task_notes refused UPDATE and DELETE (0003) but not TRUNCATE.
CREATE TRIGGER task_notes_no_truncate BEFORE TRUNCATE ON task_notes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON task_notes FROM PUBLIC;
