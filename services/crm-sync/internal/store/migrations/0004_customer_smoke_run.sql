-- The smoke test run (`launchready smoke`) that made the customer, empty for
-- real customers: its contact is marked launchready_test in the CRM, shows
-- no MRR and gets no deals, so no pipeline or revenue report counts it.
ALTER TABLE customers ADD COLUMN smoke_run text NOT NULL DEFAULT '';
