-- Each flush gate updates a row of its own (a slot picked at start), so
-- that replicas forcing flushes at the same moment do not queue on one
-- row's lock: their synchronous commits then share one WAL flush instead
-- of taking turns.
ALTER TABLE wal_flush DROP CONSTRAINT wal_flush_id_check;
ALTER TABLE wal_flush ADD CONSTRAINT wal_flush_id_check CHECK (id BETWEEN 1 AND 64);
