-- Lookups by correlation id (GET /api/v1/events?correlation_id=...), in arrival order.
CREATE INDEX events_by_correlation ON events (correlation_id, seq);
