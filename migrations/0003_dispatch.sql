-- Dispatch, supplies, the incident timeline, tasks and the unit outbox.
--
-- The vocabularies are owned by dispatch/progress.py (dispatch, requisition
-- and task states) and command/incidents.py (incident lifecycle); the CHECKs
-- repeat them so no code path can store anything else. Every invariant the
-- dispatch API promises is backed here, not only in application code.

-- One order to one unit for one incident. Deadlines live in the row, so a
-- restarted server (or another instance) fires them, and fires them once:
-- the sweep sets overdue_at in the same UPDATE that selects the row.
CREATE TABLE dispatches (
    id              bigserial PRIMARY KEY,
    incident_id     bigint NOT NULL REFERENCES incidents (id),
    unit_id         text NOT NULL REFERENCES units (id),
    -- The plan's need this unit fills, when the dispatcher said so.
    capability      text,
    status          text NOT NULL DEFAULT 'dispatched' CHECK (status IN
                        ('dispatched', 'acknowledged', 'en_route', 'on_scene', 'cleared',
                         'declined', 'cancelled')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    ack_deadline    timestamptz NOT NULL CHECK (ack_deadline >= created_at),
    -- Road ETA from the unit's position when dispatched (null: unroutable).
    eta_s           double precision CHECK (eta_s >= 0),
    -- What the unit was sent (units/{id}/dispatch and the field feed).
    order_doc       jsonb NOT NULL,
    overdue_at      timestamptz,
    acknowledged_at timestamptz,
    en_route_at     timestamptz,
    on_scene_at     timestamptz,
    cleared_at      timestamptz,
    declined_at     timestamptz,
    cancelled_at    timestamptz,
    reason          text CHECK (length(reason) <= 500),
    updated_at      timestamptz NOT NULL,
    CHECK (status <> 'declined' OR (reason IS NOT NULL AND declined_at IS NOT NULL)),
    CHECK (status <> 'acknowledged' OR acknowledged_at IS NOT NULL),
    CHECK (status <> 'en_route' OR en_route_at IS NOT NULL),
    CHECK (status <> 'on_scene' OR on_scene_at IS NOT NULL),
    CHECK (status <> 'cleared' OR cleared_at IS NOT NULL),
    CHECK (status <> 'cancelled' OR cancelled_at IS NOT NULL)
);
-- A unit works one dispatch at a time: of twenty commanders racing for the
-- same unit, the database lets exactly one through.
CREATE UNIQUE INDEX dispatches_one_active_per_unit ON dispatches (unit_id)
    WHERE status IN ('dispatched', 'acknowledged', 'en_route', 'on_scene');
CREATE INDEX dispatches_incident ON dispatches (incident_id);
CREATE INDEX dispatches_ack_due ON dispatches (ack_deadline)
    WHERE status = 'dispatched' AND overdue_at IS NULL;

-- Supplies for an incident, carried by one of its dispatches. Stock is taken
-- when requested (so it can never be promised twice) and given back when
-- released; stock.quantity >= 0 (0001) refuses any overdraw.
CREATE TABLE requisitions (
    id              bigserial PRIMARY KEY,
    incident_id     bigint NOT NULL REFERENCES incidents (id),
    -- Deferred: the order sent to the unit names its requisitions, so they
    -- are written before the dispatch row that carries that order.
    dispatch_id     bigint NOT NULL REFERENCES dispatches (id) DEFERRABLE INITIALLY DEFERRED,
    depot_id        text NOT NULL,
    item            text NOT NULL,
    quantity        numeric NOT NULL CHECK (quantity > 0),
    unit            text NOT NULL,
    status          text NOT NULL DEFAULT 'requested' CHECK (status IN
                        ('requested', 'committed', 'delivered', 'released')),
    requested_at    timestamptz NOT NULL,
    committed_at    timestamptz,
    delivered_at    timestamptz,
    released_at     timestamptz,
    FOREIGN KEY (depot_id, item) REFERENCES stock (depot_id, item),
    CHECK (status <> 'committed' OR committed_at IS NOT NULL),
    CHECK (status <> 'delivered' OR delivered_at IS NOT NULL),
    CHECK (status <> 'released' OR released_at IS NOT NULL)
);
CREATE INDEX requisitions_dispatch ON requisitions (dispatch_id);
CREATE INDEX requisitions_incident ON requisitions (incident_id);

-- The incident's history: who changed what and when. Append-only: the
-- triggers below refuse UPDATE, DELETE and TRUNCATE from every role,
-- the server's included (only DDL by the table's owner could undo that,
-- which is why production runs migrations as a separate owner; see
-- docs/operations.md).
CREATE TABLE incident_timeline (
    id              bigserial PRIMARY KEY,
    incident_id     bigint NOT NULL REFERENCES incidents (id),
    at              timestamptz NOT NULL,
    actor           text NOT NULL,
    action          text NOT NULL,
    from_status     text,
    to_status       text,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER incident_timeline_append_only BEFORE UPDATE OR DELETE ON incident_timeline
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER incident_timeline_no_truncate BEFORE TRUNCATE ON incident_timeline
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON incident_timeline FROM PUBLIC;

-- Supervision (督查督办): what must be done for an incident, by whom, by when.
CREATE TABLE tasks (
    id              bigserial PRIMARY KEY,
    incident_id     bigint NOT NULL REFERENCES incidents (id),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    -- 'plan' tasks come from the response plan once per incident (plan_key
    -- is their identity); 'manual' ones are added by a commander.
    source          text NOT NULL CHECK (source IN ('plan', 'manual')),
    plan_key        text,
    owner_unit      text REFERENCES units (id),
    owner_name      text CHECK (length(owner_name) <= 100),
    due_at          timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN
                        ('open', 'in_progress', 'done', 'failed', 'cancelled')),
    result          text CHECK (length(result) <= 2000),
    overdue_at      timestamptz,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (incident_id, plan_key),
    CHECK ((source = 'plan') = (plan_key IS NOT NULL)),
    CHECK (status NOT IN ('done', 'failed') OR result IS NOT NULL)
);
CREATE INDEX tasks_incident ON tasks (incident_id);
CREATE INDEX tasks_due ON tasks (due_at) WHERE status IN ('open', 'in_progress') AND overdue_at IS NULL;

-- Progress notes on a task: evidence, never edited.
CREATE TABLE task_notes (
    id              bigserial PRIMARY KEY,
    task_id         bigint NOT NULL REFERENCES tasks (id),
    at              timestamptz NOT NULL,
    author          text NOT NULL,
    note            text NOT NULL CHECK (length(note) BETWEEN 1 AND 2000)
);
CREATE INDEX task_notes_task ON task_notes (task_id, id);
CREATE TRIGGER task_notes_append_only BEFORE UPDATE OR DELETE ON task_notes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Messages for units (dispatch orders, cancellations), written in the
-- transaction that decided them and published on units/{id}/dispatch by
-- whichever instance gets there first; sent_at is set after the broker's
-- PUBACK, so an order survives a crash between commit and publish.
CREATE TABLE unit_outbox (
    id              bigserial PRIMARY KEY,
    unit_id         text NOT NULL REFERENCES units (id),
    dispatch_id     bigint REFERENCES dispatches (id),
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX unit_outbox_unsent ON unit_outbox (id) WHERE sent_at IS NULL;

-- Manual incidents (a phone report) record who created them.
ALTER TABLE incidents ADD COLUMN created_by text;
-- The KPIs (GET /api/stats) select incidents by when they opened.
CREATE INDEX incidents_opened_at ON incidents (opened_at);
