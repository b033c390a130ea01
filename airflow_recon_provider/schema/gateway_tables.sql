-- The runbook's billing gateway tables (DESIGN section 2), with the indexes the
-- window queries use. For tests, the demo and the seed; idempotent.
CREATE TABLE IF NOT EXISTS payment_intents (
    id                  bigserial PRIMARY KEY,
    provider            text NOT NULL,
    provider_reference  text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payment_intents_provider ON payment_intents (provider);

CREATE TABLE IF NOT EXISTS payment_transactions (
    id                bigserial PRIMARY KEY,
    intent_id         bigint NOT NULL REFERENCES payment_intents (id),
    transaction_type  text NOT NULL
                      CHECK (transaction_type IN ('authorization', 'capture', 'settlement', 'refund')),
    status            text NOT NULL,
    amount_minor      bigint NOT NULL,
    currency          text NOT NULL,
    created_at        timestamptz NOT NULL,
    processed_at      timestamptz
);
CREATE INDEX IF NOT EXISTS payment_transactions_created_at
    ON payment_transactions (created_at) INCLUDE (intent_id);
CREATE INDEX IF NOT EXISTS payment_transactions_intent ON payment_transactions (intent_id);

CREATE TABLE IF NOT EXISTS psp_statement_lines (
    id                  bigserial PRIMARY KEY,
    psp                 text NOT NULL,
    provider_reference  text NOT NULL,
    transaction_type    text NOT NULL,
    status              text NOT NULL,
    amount_minor        bigint NOT NULL,
    currency            text NOT NULL,
    occurred_at         timestamptz NOT NULL,
    statement_id        text NOT NULL
);
CREATE INDEX IF NOT EXISTS psp_statement_lines_psp_occurred
    ON psp_statement_lines (psp, occurred_at);
CREATE INDEX IF NOT EXISTS psp_statement_lines_statement
    ON psp_statement_lines (psp, statement_id);

CREATE TABLE IF NOT EXISTS payment_reconciliation_logs (
    id                      bigserial PRIMARY KEY,
    psp                     text NOT NULL,
    cycle_start             timestamptz NOT NULL,
    cycle_end               timestamptz NOT NULL,
    status                  text NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    divergent_amount_minor  bigint NOT NULL DEFAULT 0,
    divergent_count         bigint NOT NULL DEFAULT 0,
    notes                   text NOT NULL DEFAULT '',
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payment_reconciliation_logs_psp_cycle
    ON payment_reconciliation_logs (psp, cycle_start);
