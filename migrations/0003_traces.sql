-- The trace of each device's current onboarding: the W3C traceparent of its `onboard device` span.
-- Every later step of the flow (consent, provisioning, the DM session, matching, alerts, bootstrap
-- jobs) opens its span under this parent, across requests, actors and restarts, so one onboarding
-- is one trace. Telemetry only: no flow reads it. (When the onboarding began is in `events`.)
CREATE TABLE device_traces (
    dev_id      TEXT    PRIMARY KEY,
    traceparent TEXT    NOT NULL
);
