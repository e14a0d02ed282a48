-- The event log: one JSON object per line in $DATA_DIR/events.jsonl.
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    payload        TEXT NOT NULL
);
