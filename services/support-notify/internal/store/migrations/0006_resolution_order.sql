-- Where each resolution stands in BILLING_EVENTS, the comment it leaves on
-- the ticket it solves, and whether it has solved one. A ticket event that
-- came earlier in the stream can be handled after the resolution when its
-- worker was held up (a dispute waits for its charge's customer while its
-- close is handled by another worker). Such an event still opens its
-- ticket, and the resolution then solves it with its own comment, so the
-- desk ends as if the two had been handled in stream order. Rows recorded
-- before this migration have stream_seq 0: nothing counts as earlier.
ALTER TABLE resolutions ADD COLUMN stream_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE resolutions ADD COLUMN comment text NOT NULL DEFAULT '';
ALTER TABLE resolutions ADD COLUMN solved_ticket boolean NOT NULL DEFAULT false;
