-- The payments ledger table of the runbook (Integridade de Dados); idempotent.
CREATE SCHEMA IF NOT EXISTS ledger;
CREATE TABLE IF NOT EXISTS ledger.transactions (
    id                  bigserial PRIMARY KEY,
    psp                 text NOT NULL,
    provider_reference  text NOT NULL,
    status              text NOT NULL,
    amount_minor        bigint NOT NULL,
    currency            text NOT NULL,
    occurred_at         timestamptz NOT NULL
);
-- a ledger table created before it had the currency of its amounts gets the column (its
-- rows show as "no currency" in the recovery criterion until filled); a table that has it
-- is left alone, also by a role that does not own it
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'ledger.transactions'::regclass AND attname = 'currency' AND NOT attisdropped
    ) THEN
        ALTER TABLE ledger.transactions ADD COLUMN currency text;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS ledger_transactions_psp_occurred ON ledger.transactions (psp, occurred_at);
