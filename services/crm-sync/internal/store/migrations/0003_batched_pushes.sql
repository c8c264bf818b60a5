-- One push may now carry several events of its customer (the events
-- waiting for it fold into one document), so settling it records all of
-- them. Same verdicts as before (see 0002_push_intents.sql).
DROP FUNCTION settle_push(text, text, text, text, text, text);

CREATE FUNCTION settle_push(p_intent text, p_provider text, p_customer text, p_events text[], p_event_types text[], p_outcome text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    was_overlapped boolean;
    verdict text;
BEGIN
    DELETE FROM crm.push_intents WHERE intent_id = p_intent RETURNING overlapped INTO was_overlapped;
    IF EXISTS (SELECT 1 FROM crm.push_intents
               WHERE provider = p_provider AND customer_id = p_customer AND expires_at > now()) THEN
        verdict := 'not_last';
    ELSIF was_overlapped IS DISTINCT FROM false THEN
        -- Overlapped, or expired and swept, so that what overlapped it
        -- is unknown.
        verdict := 'repair';
    ELSE
        verdict := 'clean';
    END IF;
    IF verdict <> 'clean' THEN
        PERFORM crm.invalidate_pushed(p_provider, p_customer);
    END IF;
    IF verdict <> 'repair' THEN
        INSERT INTO crm.processed_events (event_id, event_type, customer_id, outcome)
        SELECT e.event_id, e.event_type, p_customer, p_outcome
        FROM unnest(p_events, p_event_types) AS e(event_id, event_type)
        ON CONFLICT (event_id) DO NOTHING;
    END IF;
    RETURN verdict;
END $$;
