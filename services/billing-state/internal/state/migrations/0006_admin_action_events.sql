-- The webhook events a staff action caused, matched by the action id the
-- changed object carries in metadata[launchready_action_id].
ALTER TABLE admin_actions ADD COLUMN event_ids text[] NOT NULL DEFAULT '{}';
