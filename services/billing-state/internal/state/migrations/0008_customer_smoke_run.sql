-- The smoke test run (`launchready smoke`) that made the customer, empty for
-- real customers. Counts, reports and drift checks leave marked customers
-- out, so a monthly smoke test never shows up as a customer or as revenue.
ALTER TABLE customers ADD COLUMN smoke_run text NOT NULL DEFAULT '';
