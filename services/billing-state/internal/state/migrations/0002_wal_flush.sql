-- One row the flush gate updates with a synchronous commit when it needs
-- the WAL on disk now (see FlushGate in durable.go).
CREATE TABLE wal_flush (
    id         int PRIMARY KEY CHECK (id = 1),
    flushes    bigint NOT NULL,
    flushed_at timestamptz NOT NULL
);
