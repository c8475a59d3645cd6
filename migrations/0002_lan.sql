-- The LAN face: consent requests, one-time provisioning tokens, and the credentials each End Device
-- got in its provisioning file (step 1-3). Only digests of tokens and of device passwords are kept.

CREATE TABLE consent_requests (
    dev_id      TEXT    PRIMARY KEY,
    token_hash  TEXT    NOT NULL,           -- hex SHA-256 of the consent token sent to the device
    state       TEXT    NOT NULL CHECK (state IN ('asked', 'allowed', 'refused')),
    asked_at    INTEGER NOT NULL,
    answered_at INTEGER,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE provisioning_tokens (
    token_hash  TEXT    PRIMARY KEY,        -- hex SHA-256 of the one-time provisioning token
    dev_id      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX provisioning_tokens_dev ON provisioning_tokens (dev_id);

-- CLCRED of each device towards the gateway's LAN DM server: the name and b64(md5(name:password))
-- (what auth-md5 and HMAC verification need; the password itself is not kept), the nonce the gateway
-- issued last, and the gateway's own SRVCRED towards that device.
CREATE TABLE device_credentials (
    dev_id          TEXT    PRIMARY KEY,
    auth_name       TEXT    NOT NULL UNIQUE,
    digest_key      TEXT    NOT NULL,
    nonce           TEXT,
    server_name     TEXT    NOT NULL,
    server_secret   TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);
