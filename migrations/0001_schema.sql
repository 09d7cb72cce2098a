-- The schema every later capability stands on.
-- Geometry is WGS 84 (SRID 4326) throughout; distances are computed on
-- geography casts so they come out in metres.

CREATE EXTENSION IF NOT EXISTS postgis;

-- Jurisdictions. An incident, a unit or a sensor belongs to the district
-- whose polygon contains it.
CREATE TABLE districts (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    name_zh     text,
    geom        geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX districts_geom_gist ON districts USING gist (geom);

-- The road graph, shaped for pgRouting (source/target vertex ids, costs in
-- seconds, a negative reverse cost for one-way edges).
CREATE TABLE roads (
    id          bigserial PRIMARY KEY,
    name        text,
    source      bigint NOT NULL,
    target      bigint NOT NULL,
    length_m    double precision NOT NULL CHECK (length_m > 0),
    speed_kmh   double precision NOT NULL CHECK (speed_kmh > 0),
    oneway      boolean NOT NULL DEFAULT false,
    cost_s      double precision GENERATED ALWAYS AS (length_m / (speed_kmh / 3.6)) STORED,
    reverse_cost_s double precision
        GENERATED ALWAYS AS (CASE WHEN oneway THEN -1 ELSE length_m / (speed_kmh / 3.6) END) STORED,
    geom        geometry(LineString, 4326) NOT NULL
);
CREATE INDEX roads_geom_gist ON roads USING gist (geom);
CREATE INDEX roads_source ON roads (source);
CREATE INDEX roads_target ON roads (target);

CREATE TABLE sensors (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    kind        text NOT NULL,
    name        text,
    district_id text REFERENCES districts (id),
    -- Optional: a registered location lets the sensor omit lat/lon.
    location    geometry(Point, 4326),
    state       text NOT NULL DEFAULT 'unknown' CHECK (state IN ('online', 'offline', 'unknown')),
    last_seen   timestamptz,
    -- Silent for longer than this (plus grace), an online sensor is marked offline.
    heartbeat_s integer NOT NULL DEFAULT 600 CHECK (heartbeat_s > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_location_gist ON sensors USING gist (location);

-- Incident status vocabulary is owned by command/incidents.py; the CHECK
-- repeats it so no code path can store anything else.
CREATE TABLE incidents (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL DEFAULT 'sensor' CHECK (source IN ('sensor', 'cap', 'manual')),
    kind        text NOT NULL,
    category    text NOT NULL CHECK (category IN
                    ('natural_disaster', 'accident', 'public_health', 'public_security')),
    severity    text NOT NULL CHECK (severity IN ('Extreme', 'Severe', 'Moderate', 'Minor', 'Unknown')),
    urgency     text,
    certainty   text,
    status      text NOT NULL DEFAULT 'new' CHECK (status IN
                    ('new', 'confirmed', 'responding', 'contained', 'resolved', 'closed',
                     'false_alarm', 'cancelled')),
    -- Null only for an alert with no geometry at all (a CAP advisory for a
    -- whole country, or one located by geocode alone).
    location    geometry(Point, 4326),
    area        geometry(Geometry, 4326),
    district_id text REFERENCES districts (id),
    title       text NOT NULL,
    -- Sensor correlation (command/correlation.py): the hazard family, the
    -- convex hull of every alarm position so far, and the latest alarm time.
    family      text,
    extent      geometry(Geometry, 4326),
    last_alarm_at timestamptz,
    alarm_count integer NOT NULL DEFAULT 0 CHECK (alarm_count >= 0),
    sensor_count integer NOT NULL DEFAULT 0 CHECK (sensor_count >= 0),
    -- What identifies an incident opened from outside (e.g. 'cap:sender:id').
    -- At most one open incident per key.
    correlation_key text,
    opened_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    closed_at   timestamptz
);
CREATE UNIQUE INDEX incidents_open_correlation_key ON incidents (correlation_key)
    WHERE status NOT IN ('resolved', 'closed', 'false_alarm', 'cancelled');
CREATE INDEX incidents_location_gist ON incidents USING gist (location);
CREATE INDEX incidents_area_gist ON incidents USING gist (area);
-- Correlation looks only at open incidents near an alarm.
CREATE INDEX incidents_open_extent_gist ON incidents USING gist (extent)
    WHERE status NOT IN ('resolved', 'closed', 'false_alarm', 'cancelled');
CREATE INDEX incidents_status ON incidents (status);

CREATE TABLE alarms (
    id          bigserial PRIMARY KEY,
    sensor_id   text NOT NULL REFERENCES sensors (id),
    alarm_id    text NOT NULL,
    kind        text NOT NULL,
    severity    text NOT NULL,
    time        timestamptz NOT NULL,
    -- received_at: when the ingest took the message (its batch's clock);
    -- stored_at: when the row was written, moments before its commit. With
    -- the alarm's own time they give publish-to-store latency per alarm.
    received_at timestamptz NOT NULL DEFAULT now(),
    stored_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    location    geometry(Point, 4326) NOT NULL,
    value       double precision,
    unit        text,
    message     text,
    incident_id bigint REFERENCES incidents (id),
    -- A redelivered alarm (QoS 1 is at-least-once) hits this and changes nothing.
    UNIQUE (sensor_id, alarm_id)
);
CREATE INDEX alarms_incident ON alarms (incident_id);

-- Which sensors an incident has heard from (sensor_count is its size).
CREATE TABLE incident_sensors (
    incident_id bigint NOT NULL REFERENCES incidents (id),
    sensor_id   text NOT NULL REFERENCES sensors (id),
    PRIMARY KEY (incident_id, sensor_id)
);

-- Every CAP message received, once: (sender, identifier) is the message's
-- identity in CAP, so a redelivered document changes nothing.
CREATE TABLE cap_messages (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    sender      text NOT NULL,
    identifier  text NOT NULL,
    sent        timestamptz NOT NULL,
    msg_type    text NOT NULL,
    status      text NOT NULL,
    incident_id bigint REFERENCES incidents (id),
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sender, identifier)
);
CREATE INDEX cap_messages_incident ON cap_messages (incident_id);
CREATE INDEX alarms_location_gist ON alarms USING gist (location);

CREATE TABLE units (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    callsign    text NOT NULL,
    type        text NOT NULL,
    capabilities text[] NOT NULL DEFAULT '{}',
    crew        integer NOT NULL DEFAULT 0 CHECK (crew >= 0),
    station     text,
    home        geometry(Point, 4326),
    district_id text REFERENCES districts (id),
    status      text NOT NULL DEFAULT 'available' CHECK (status IN
                    ('available', 'dispatched', 'en_route', 'on_scene', 'returning', 'out_of_service')),
    -- When the unit last reported its status: older reports are ignored.
    status_at   timestamptz,
    position    geometry(Point, 4326),
    position_at timestamptz,
    speed       double precision,
    heading     double precision,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX units_position_gist ON units USING gist (position);

CREATE TABLE depots (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    location    geometry(Point, 4326) NOT NULL,
    district_id text REFERENCES districts (id)
);
CREATE INDEX depots_location_gist ON depots USING gist (location);

CREATE TABLE stock (
    depot_id    text NOT NULL REFERENCES depots (id),
    item        text NOT NULL,
    -- Stock can never go negative, whatever the application does.
    quantity    numeric NOT NULL CHECK (quantity >= 0),
    unit        text NOT NULL,
    expires_on  date,
    PRIMARY KEY (depot_id, item)
);

-- Risk sources: chemical plants, gas stations, flood-prone underpasses...
CREATE TABLE hazards (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    name        text NOT NULL,
    geom        geometry(Geometry, 4326) NOT NULL,
    attrs       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX hazards_geom_gist ON hazards USING gist (geom);

-- Protection targets: schools, hospitals, care homes, stations.
CREATE TABLE sites (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    name        text NOT NULL,
    geom        geometry(Geometry, 4326) NOT NULL,
    capacity    integer CHECK (capacity >= 0),
    beds        integer CHECK (beds >= 0),
    attrs       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX sites_geom_gist ON sites USING gist (geom);

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    username    text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'commander', 'dispatcher', 'field', 'viewer')),
    unit_id     text REFERENCES units (id),
    districts   text[],
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'field') = (unit_id IS NOT NULL))
);

-- Only a hash of each bearer token is stored: a leaked table grants nothing.
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Every input we could not accept, with why. Rows are evidence: never updated.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    payload_size integer NOT NULL,
    reason      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- The transactional outbox. Every state change writes its event row in the
-- same transaction; every instance's hub tails this table by seq.
-- Invariant: seq order equals commit order, because writers take the
-- 'events' advisory lock (command/store.py) just before inserting here and
-- hold it to commit. A tailer that has read up to seq N can therefore never
-- later see a smaller seq appear.
CREATE TABLE events (
    seq         bigserial PRIMARY KEY,
    name        text NOT NULL,
    data        jsonb NOT NULL,
    incident_id bigint,
    unit_id     text,
    district_id text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_created ON events (created_at);
