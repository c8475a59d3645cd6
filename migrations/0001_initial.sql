-- dmgw's first schema: DMAcc accounts, the Device Inventory, the alert outbox, bootstrap jobs, events.
-- Times are INTEGER milliseconds since the Unix epoch (UTC); the API renders them as RFC 3339.

-- DMAcc accounts (./DMAcc/<node_name>), one per DM Server the gateway is bootstrapped with.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    server_id     TEXT    NOT NULL UNIQUE,
    node_name     TEXT    NOT NULL UNIQUE,
    name          TEXT,
    pref_con_ref  TEXT,
    aauth_pref    TEXT,
    origin        TEXT    NOT NULL CHECK (origin IN ('factory', 'operator', 'bootstrap')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- ./DMAcc/<X>/AppAddr/<node_name>
CREATE TABLE account_addrs (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    node_name  TEXT    NOT NULL,
    addr       TEXT    NOT NULL,
    addr_type  TEXT    NOT NULL,
    ports      TEXT    NOT NULL DEFAULT '',  -- comma-separated PortNbr values
    PRIMARY KEY (account_id, node_name)
);

-- ./DMAcc/<X>/AppAuth/<node_name>, without its secrets (those live in account_secrets).
CREATE TABLE account_auths (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    node_name  TEXT    NOT NULL,
    level      TEXT    NOT NULL,
    auth_type  TEXT    NOT NULL,
    auth_name  TEXT,
    PRIMARY KEY (account_id, node_name)
);

-- AAuthSecret and AAuthData (the nonce) of each AppAuth, apart from what the API reads.
CREATE TABLE account_secrets (
    account_id INTEGER NOT NULL,
    node_name  TEXT    NOT NULL,
    secret     TEXT,
    data       TEXT,
    PRIMARY KEY (account_id, node_name),
    FOREIGN KEY (account_id, node_name) REFERENCES account_auths (account_id, node_name) ON DELETE CASCADE
);

-- Device Inventory records (./DeviceInventory/<X>), one per End Device.
CREATE TABLE devices (
    id          INTEGER PRIMARY KEY,
    dev_id      TEXT    NOT NULL UNIQUE,
    man         TEXT,
    model       TEXT,
    dev_type    TEXT,
    dm_v        TEXT,
    lang        TEXT,
    address     TEXT,
    state       TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX devices_state ON devices (state);

-- The ServerIDs each device reported (step 1-4) and whether the gateway's DMAcc matches them.
CREATE TABLE device_servers (
    device_id      INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    server_id      TEXT    NOT NULL,
    matched        INTEGER NOT NULL DEFAULT 0 CHECK (matched IN (0, 1)),
    bootstrap_url  TEXT,
    reported_at    INTEGER NOT NULL,
    PRIMARY KEY (device_id, server_id)
);
CREATE INDEX device_servers_server ON device_servers (server_id, matched);

-- The alert outbox: one row per device x server x alert; delivered exactly once as the server sees
-- it (the correlator lets it recognise a repeat).
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    dev_id          TEXT    NOT NULL,
    server_id       TEXT    NOT NULL,
    alert_type      TEXT    NOT NULL,
    correlator      TEXT    NOT NULL UNIQUE,
    data            TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX alert_outbox_due ON alert_outbox (state, next_attempt_at);
CREATE INDEX alert_outbox_server ON alert_outbox (server_id, state);

-- Bootstrap jobs: getting the gateway bootstrapped for a ServerID it does not know (steps 4-7).
CREATE TABLE bootstrap_jobs (
    id              INTEGER PRIMARY KEY,
    server_id       TEXT    NOT NULL,
    dev_id          TEXT    NOT NULL,
    workflow        INTEGER NOT NULL CHECK (workflow IN (1, 2)),
    bootstrap_url   TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'in_progress', 'awaiting_push', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (server_id, dev_id)
);
CREATE INDEX bootstrap_jobs_due ON bootstrap_jobs (state, next_attempt_at);

-- What happened to each device, in order.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    dev_id  TEXT,
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT '{}',
    at      INTEGER NOT NULL
);
CREATE INDEX events_dev ON events (dev_id, id);
