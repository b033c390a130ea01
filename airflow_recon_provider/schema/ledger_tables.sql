-- The payments ledger table of the runbook (Integridade de Dados); idempotent.
CREATE SCHEMA IF NOT EXISTS ledger;
CREATE TABLE IF NOT EXISTS ledger.transactions (
    id                  bigserial PRIMARY KEY,
    psp                 text NOT NULL,
    provider_reference  text NOT NULL,
    status              text NOT NULL,
    amount_minor        bigint NOT NULL,
    occurred_at         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_transactions_psp_occurred ON ledger.transactions (psp, occurred_at);
