-- How many events the message that carried each alert covered: 1 for an
-- alert of its own, more for a digest folded from a burst.
ALTER TABLE alerts_sent ADD COLUMN digest_size integer NOT NULL DEFAULT 1;
