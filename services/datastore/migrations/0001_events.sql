-- The event log: one row per stored audit event, in arrival order (seq).
CREATE TABLE events (
    seq            BIGSERIAL NOT NULL,
    id             TEXT PRIMARY KEY,
    event_id       TEXT NOT NULL DEFAULT '',
    correlation_id TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    source         TEXT NOT NULL DEFAULT '',
    namespace      TEXT NOT NULL DEFAULT '',
    fingerprint    TEXT NOT NULL DEFAULT '',
    payload        JSON NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
