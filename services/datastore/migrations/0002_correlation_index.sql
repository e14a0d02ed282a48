-- Lookups by correlation id (GET /api/v1/events?correlation_id=...).
CREATE INDEX events_by_correlation ON events (correlation_id, received_at);
