-- Alerts go out on several channels (Slack, ops e-mail, customer e-mail,
-- SMS), each deduplicated by event id on its own: the channel joins the key.
-- Rows written before this migration were Slack's.
ALTER TABLE alerts_sent ADD COLUMN channel text NOT NULL DEFAULT 'slack';
ALTER TABLE alerts_sent DROP CONSTRAINT alerts_sent_pkey;
ALTER TABLE alerts_sent ADD PRIMARY KEY (channel, event_id);
CREATE INDEX alerts_sent_by_event ON alerts_sent (event_id);
