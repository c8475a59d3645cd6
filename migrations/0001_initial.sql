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
    bootstrap_server_url TEXT,  -- Ext/BootstrapServerURL (dmgw extension, see omadm::mo)
    origin        TEXT    NOT NULL CHECK (origin IN ('factory', 'operator', 'bootstrap')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- ./DMAcc/<X>/AppAddr/<node_name>
CREATE TABLE account_addrs (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    node_name  TEXT    NOT NULL,
    addr       TEXT    NOT NULL,
    addr_type  TEXT    NOT NULL CHECK (addr_type IN ('URI', 'IPv4', 'IPv6')),
    PRIMARY KEY (account_id, node_name)
);

-- ./DMAcc/<X>/AppAddr/<addr_node>/Port/<node_name>/PortNbr
CREATE TABLE account_ports (
    account_id INTEGER NOT NULL,
    addr_node  TEXT    NOT NULL,
    node_name  TEXT    NOT NULL,
    port_nbr   INTEGER NOT NULL CHECK (port_nbr BETWEEN 0 AND 65535),
    PRIMARY KEY (account_id, addr_node, node_name),
    FOREIGN KEY (account_id, addr_node) REFERENCES account_addrs (account_id, node_name) ON DELETE CASCADE
);

-- ./DMAcc/<X>/AppAuth/<node_name>, without its secrets (those live in account_secrets).
CREATE TABLE account_auths (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    node_name  TEXT    NOT NULL,
    level      TEXT    NOT NULL CHECK (level IN ('CLCRED', 'SRVCRED', 'HTTP')),
    auth_type  TEXT    NOT NULL,
    auth_name  TEXT,
    PRIMARY KEY (account_id, node_name)
);

-- AAuthSecret and AAuthData (the nonce, base64 text) of each AppAuth, apart from what the API reads.
-- Every account_auths row has exactly one account_secrets row (both columns may be NULL).
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
    state       TEXT    NOT NULL,  -- omadm::mo::DeviceState text (discovered, attached, ...)
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
    position       INTEGER NOT NULL,  -- 1, 2, 3 ... in the order the device reported them
    reported_at    INTEGER NOT NULL,
    PRIMARY KEY (device_id, server_id)
);
CREATE INDEX device_servers_server ON device_servers (server_id, matched);

-- The alert outbox: one row per device x server x alert; delivered exactly once as the server sees
-- it (the correlator lets it recognise a repeat). Due when state = 'pending' and next_attempt_at <= now.
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
CREATE INDEX alert_outbox_dev ON alert_outbox (dev_id);

-- Bootstrap jobs: getting the gateway bootstrapped for a ServerID it does not know (steps 4-7).
-- A job is due when its state is pending, in_progress or awaiting_push and next_attempt_at <= now:
-- next_attempt_at is the retry time (pending), the lease end (in_progress: a job whose worker
-- crashed is picked up again) or the push deadline (awaiting_push).
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
