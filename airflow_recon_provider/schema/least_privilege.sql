-- Least-privilege PostgreSQL roles of the provider (docs/reliability.md, "Least privilege").
--
-- Run as the owner of the tables (or a superuser), after `airflow-recon migrate`, in the
-- billing gateway database. Idempotent. Two group roles (NOLOGIN); the login role the
-- `billing_gateway_db` connection uses is made a member of one or both:
--
--   recon_remediation     what the remediation, the sensors, the CLI and the data correction
--                         need: read the runbook tables; UPDATE only status and processed_at of
--                         payment_transactions (the runbook's correction); append the
--                         correction's traceability line to payment_reconciliation_logs.notes
--                         (or open a cycle row when none covers the moment); read and write the
--                         rows of the `recon` schema (no DDL: migrations stay with the owner).
--   recon_reconciliation  the reference hourly DAG (billing_gateway_reconciliation): replace a
--                         cycle's psp_statement_lines and record the cycle in
--                         payment_reconciliation_logs. A site that keeps its own hourly DAG
--                         does not grant it.
--
-- Neither can change an amount, a currency, a reference or a transaction type, insert or
-- delete a payment, touch payment_intents, or create, alter or drop anything.
-- `airflow_recon_provider.schema.privileges.grant_least_privilege()` runs this file and creates or updates
-- the login role (with its password) as a member; with a custom table mapping, edit the
-- table and column names below.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recon_remediation') THEN
        CREATE ROLE recon_remediation NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recon_reconciliation') THEN
        CREATE ROLE recon_reconciliation NOLOGIN;
    END IF;
END
$$;

-- runbook tables: read
GRANT USAGE ON SCHEMA public TO recon_remediation, recon_reconciliation;
GRANT SELECT ON payment_intents, payment_transactions, psp_statement_lines, payment_reconciliation_logs
    TO recon_remediation, recon_reconciliation;

-- the correction: UPDATE payment_transactions SET status = ..., processed_at = NOW() (and the
-- SELECT ... FOR UPDATE of its target rows, which a column UPDATE privilege allows)
GRANT UPDATE (status, processed_at) ON payment_transactions TO recon_remediation;

-- traceability: one line per correction appended to the covering cycle's notes; a cycle
-- without a row gets none from a correction (its line waits in recon.corrections for the
-- row the reconciliation writes), so no INSERT here
GRANT UPDATE (notes) ON payment_reconciliation_logs TO recon_remediation;

-- the reference hourly DAG: statement lines of a cycle replaced, the cycle recorded
GRANT INSERT, DELETE ON psp_statement_lines TO recon_reconciliation;
GRANT USAGE ON SEQUENCE psp_statement_lines_id_seq TO recon_reconciliation;
GRANT INSERT, UPDATE (status, divergent_amount_minor, divergent_count, notes)
    ON payment_reconciliation_logs TO recon_reconciliation;
GRANT USAGE ON SEQUENCE payment_reconciliation_logs_id_seq TO recon_reconciliation;

-- the payments ledger (runbook: Integridade de Dados): read only, where it lives in this
-- database (PaymentsLedgerHook; a separate ledger database grants the same there)
DO $$
BEGIN
    IF to_regclass('ledger.transactions') IS NOT NULL THEN
        GRANT USAGE ON SCHEMA ledger TO recon_remediation;
        GRANT SELECT ON ledger.transactions TO recon_remediation;
    END IF;
END
$$;

-- the provider's own schema: rows only, never DDL (no CREATE on the schema)
GRANT USAGE ON SCHEMA recon TO recon_remediation, recon_reconciliation;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA recon TO recon_remediation;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA recon TO recon_remediation;
-- the hourly DAG reads the per-PSP pause (recon.controls)
GRANT SELECT ON recon.controls TO recon_reconciliation;
-- and, recording a cycle, takes the notes of corrections that waited for its log row
-- (migration 9): those columns only
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass('recon.corrections') AND attname = 'note_pending') THEN
        GRANT SELECT (id, psp, note_cycle_start, note_pending), UPDATE (note_pending)
            ON recon.corrections TO recon_reconciliation;
    END IF;
END
$$;
-- match_transactions stores each cycle's classification and reads it back (migration 5,
-- reconciliation/cycle_store.py); the change marks are written by SECURITY DEFINER
-- triggers, so no writer of the gateway tables needs a right on them
DO $$
BEGIN
    IF to_regclass('recon.cycle_results') IS NOT NULL THEN
        GRANT SELECT ON recon.cycle_marks, recon.cycle_store_state TO recon_reconciliation;
        GRANT SELECT, INSERT, UPDATE, DELETE ON recon.cycle_results, recon.cycle_divergences,
            recon.cycle_kind_totals, recon.cycle_straddlers TO recon_reconciliation;
    END IF;
END
$$;
-- tables a later migration adds (created by the same owner) get the same rights
ALTER DEFAULT PRIVILEGES IN SCHEMA recon GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO recon_remediation;
ALTER DEFAULT PRIVILEGES IN SCHEMA recon GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO recon_remediation;

-- nothing for PUBLIC to create in the gateway's schema (PostgreSQL >= 15 default; said here
-- for older servers)
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
