-- A CRM push happens outside any transaction: an intent is recorded (with
-- the mirror's changes) before the vendor call, and settled after it, in
-- a short transaction of its own. One row per push in flight.
--
-- Calls for one customer may overlap: their order of arrival at the
-- vendor is unknown, so an older document may land last. An intent opened
-- while another of its customer is open, or while the mirror changes under
-- it, is marked overlapped. The last one of a customer to settle pushes
-- the current document again if any was overlapped ('repair'); until a
-- push settles clean, the stored hash of what the CRM holds is cleared, so
-- the next derivation pushes whatever it finds.
--
-- expires_at is the pushing delivery's own deadline plus a margin: past it
-- no call of that delivery can be in flight, and a crashed delivery's
-- intent stops counting.
CREATE TABLE push_intents (
    intent_id   text PRIMARY KEY,
    provider    text NOT NULL,
    customer_id text NOT NULL,
    event_id    text NOT NULL,
    overlapped  boolean NOT NULL DEFAULT false,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX push_intents_customer ON push_intents (provider, customer_id);

-- open_push records an intent. Every intent of the customer still open is
-- overlapped by it, and it by them.
CREATE FUNCTION open_push(p_intent text, p_provider text, p_customer text, p_event text, p_ttl_seconds double precision)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    others boolean;
BEGIN
    DELETE FROM crm.push_intents WHERE provider = p_provider AND customer_id = p_customer AND expires_at <= now();
    UPDATE crm.push_intents SET overlapped = true WHERE provider = p_provider AND customer_id = p_customer;
    others := FOUND;
    INSERT INTO crm.push_intents (intent_id, provider, customer_id, event_id, overlapped, expires_at)
    VALUES (p_intent, p_provider, p_customer, p_event, others, now() + make_interval(secs => p_ttl_seconds));
END $$;

-- overlap_pushes marks the customer's open intents overlapped: the mirror
-- changed after their documents were derived.
CREATE FUNCTION overlap_pushes(p_provider text, p_customer text)
RETURNS void LANGUAGE sql AS $$
    UPDATE crm.push_intents SET overlapped = true
    WHERE provider = p_provider AND customer_id = p_customer AND expires_at > now();
$$;

-- invalidate_pushed forgets what the CRM holds for the customer, so the
-- next derivation pushes every document.
CREATE FUNCTION invalidate_pushed(p_provider text, p_customer text)
RETURNS void LANGUAGE sql AS $$
    UPDATE crm.contacts SET pushed_hash = '' WHERE provider = p_provider AND customer_id = p_customer;
    UPDATE crm.deals SET pushed_hash = '' WHERE provider = p_provider AND customer_id = p_customer;
$$;

-- settle_push closes a successful push and says what it proved:
--   'clean'    no other push of the customer overlapped it, nor is open:
--              the CRM holds its documents, as recorded;
--   'not_last' another push is still open and will settle after it;
--   'repair'   it settles last, but overlapped others: the CRM may hold
--              an older document, so the caller pushes the current one.
-- The event is recorded as processed unless a repair is due (the repair's
-- own settling records it), and the stored hashes are cleared unless the
-- push was clean.
CREATE FUNCTION settle_push(p_intent text, p_provider text, p_customer text, p_event text, p_event_type text, p_outcome text)
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
        VALUES (p_event, p_event_type, p_customer, p_outcome)
        ON CONFLICT (event_id) DO NOTHING;
    END IF;
    RETURN verdict;
END $$;

-- abandon_push closes a push whose call failed. If any request was sent,
-- part of it may have landed, in any order with the others: the stored
-- hashes are cleared and the customer's other open pushes overlapped.
CREATE FUNCTION abandon_push(p_intent text, p_provider text, p_customer text, p_sent boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm.push_intents WHERE intent_id = p_intent;
    IF p_sent THEN
        PERFORM crm.invalidate_pushed(p_provider, p_customer);
        PERFORM crm.overlap_pushes(p_provider, p_customer);
    END IF;
END $$;
