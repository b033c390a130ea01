"""TableMapping / TableRef (identifiers only through sql.Identifier) and ReconConfig."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from airflow_recon_provider.reconciliation import (
    ConfigError,
    MappingError,
    PspConfig,
    ReconConfig,
    TableMapping,
    TableRef,
    ThresholdPolicy,
    UnknownPspError,
    check_psp_name,
    queries,
)
from airflow_recon_provider.reconciliation.config import CONFIG_ENV

INJECTIONS = [
    "payment_transactions; DROP TABLE x",
    '"quoted"',
    'payment_transactions" ; DROP TABLE x; --',
    "a b",
    "a-b",
    "1abc",
    "",
    " ",
    "x" * 64,
    "tx\n",
    "tx\nDROP",
    "tx--",
    "tx/*",
    "tabela_ção",
    "tx\x00",
    "tx'",
]

# -- TableRef ------------------------------------------------------------------------


def test_table_ref_parse():
    assert TableRef.parse("payment_transactions") == TableRef("payment_transactions")
    assert TableRef.parse("ledger.transactions") == TableRef("transactions", "ledger")
    assert str(TableRef("transactions", "ledger")) == "ledger.transactions"
    assert str(TableRef("tx")) == "tx"
    assert TableRef.parse("_Tx_2") == TableRef("_Tx_2")
    assert TableRef("x" * 63).name == "x" * 63


@pytest.mark.parametrize("bad", INJECTIONS)
def test_table_ref_rejects_non_identifiers_naming_the_value(bad):
    with pytest.raises(MappingError) as info:
        TableRef.parse(bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(MappingError) as info:
        TableRef("tx", bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", ["a.b.c", "public.payment_transactions; DROP TABLE x.y", "a..b", "."])
def test_table_ref_rejects_more_than_schema_and_table(bad):
    with pytest.raises(MappingError):
        TableRef.parse(bad)


def test_table_ref_rejects_a_three_part_name_naming_it():
    with pytest.raises(MappingError, match=re.escape("'a.b.c'")):
        TableRef.parse("a.b.c")


@pytest.mark.parametrize("bad", [None, 5, ["tx"]])
def test_table_ref_rejects_non_strings(bad):
    with pytest.raises(MappingError):
        TableRef.parse(bad)


# -- TableMapping --------------------------------------------------------------------


def test_default_mapping_is_the_runbook():
    m = TableMapping()
    assert str(m.intents.table) == "payment_intents"
    assert str(m.transactions.table) == "payment_transactions"
    assert str(m.statements.table) == "psp_statement_lines"
    assert str(m.reconciliation_logs.table) == "payment_reconciliation_logs"
    assert str(m.ledger.table) == "ledger.transactions"
    assert m.transactions.amount_minor == "amount_minor"
    assert m.transactions.created_at == "created_at"
    assert m.statements.occurred_at == "occurred_at"
    assert m.intents.provider == "provider"
    assert TableMapping.from_dict(None) == m
    assert TableMapping.from_dict({}) == m


def test_custom_mapping():
    m = TableMapping.from_dict(
        {
            "payment_transactions": {"table": "billing.tx", "amount_minor": "amt", "created_at": "ts"},
            "payment_intents": {"table": "intents", "provider": "psp_name"},
            "psp_statement_lines": {"table": "stmt"},
            "ledger_transactions": {"table": "ledger2.entries", "psp": "acquirer"},
        }
    )
    assert m.transactions.table == TableRef("tx", "billing")
    assert (m.transactions.amount_minor, m.transactions.created_at) == ("amt", "ts")
    assert m.transactions.status == "status"  # untouched columns keep runbook names
    assert m.intents.table == TableRef("intents") and m.intents.provider == "psp_name"
    assert m.statements.table == TableRef("stmt") and m.statements.psp == "psp"
    assert m.ledger.table == TableRef("entries", "ledger2") and m.ledger.psp == "acquirer"
    assert str(m.reconciliation_logs.table) == "payment_reconciliation_logs"


@pytest.mark.parametrize("bad", INJECTIONS)
def test_mapping_rejects_bad_column_names(bad):
    with pytest.raises(MappingError) as info:
        TableMapping.from_dict({"payment_transactions": {"amount_minor": bad}})
    assert repr(bad) in str(info.value)
    assert "amount_minor" in str(info.value)


@pytest.mark.parametrize("bad", [*INJECTIONS, "a.b.c"])
def test_mapping_rejects_bad_table_names(bad):
    with pytest.raises(MappingError) as info:
        TableMapping.from_dict({"psp_statement_lines": {"table": bad}})
    assert repr(bad) in str(info.value) or repr(bad.split(".")[-1]) in str(info.value)


def test_mapping_rejects_unknown_sections_and_columns():
    with pytest.raises(MappingError, match="transactions_table"):
        TableMapping.from_dict({"transactions_table": {}})
    with pytest.raises(MappingError, match="amount_cents"):
        TableMapping.from_dict({"payment_transactions": {"amount_cents": "amt"}})


@pytest.mark.parametrize("bad", [{"payment_transactions": "tx"}, {"payment_transactions": ["tx"]}, ["tx"]])
def test_mapping_rejects_wrong_shapes(bad):
    with pytest.raises(MappingError):
        TableMapping.from_dict(bad)


def test_composed_sql_quotes_custom_identifiers():
    m = TableMapping.from_dict(
        {
            "payment_transactions": {"table": "Billing.Tx_Rows", "amount_minor": "AmountCents"},
            "payment_intents": {"table": "intents_v2", "provider": "Acquirer"},
            "psp_statement_lines": {"table": "stmt", "occurred_at": "seen_at"},
        }
    )
    report = queries.divergence_report_query(m).as_string(None)
    assert '"Billing"."Tx_Rows" AS t' in report
    assert '"intents_v2" AS i' in report
    assert '"stmt" AS l' in report
    assert 'sum(t."AmountCents")' in report
    assert 'i."Acquirer" = %(psp)s' in report
    assert 'l."seen_at" >= %(wide_start)s' in report
    # the runbook names no longer appear as tables
    assert "payment_transactions" not in report and "psp_statement_lines" not in report
    totals = queries.gateway_totals_query(m).as_string(None)
    assert 'FROM "Billing"."Tx_Rows" AS t JOIN "intents_v2" AS i' in totals
    by_kind = queries.divergence_by_kind_query(m).as_string(None)
    assert '"Billing"."Tx_Rows"' in by_kind and "payment_transactions" not in by_kind
    # values are never spliced: only named placeholders
    for text in (report, totals, by_kind):
        assert "%(psp)s" in text


def test_default_sql_quotes_runbook_names():
    report = queries.divergence_report_query(TableMapping()).as_string(None)
    assert 'FROM "payment_transactions" AS t' in report
    assert 'JOIN "payment_intents" AS i' in report
    assert 'FROM "psp_statement_lines" AS l' in report
    ledger = queries.ledger_totals_query(TableMapping()).as_string(None)
    assert 'FROM "ledger"."transactions"' in ledger


# -- PSP names -----------------------------------------------------------------------

BAD_PSPS = [
    "stripe'; DROP TABLE payment_transactions; --",
    "stripe' OR '1'='1",
    "Stripe",
    "stripe ",
    " stripe",
    "stripe\n",
    "",
    "_stripe",
    "str-ipe",
    "stripe;",
    "a" * 64,
    "strípe",
    None,
    5,
]


@pytest.mark.parametrize("bad", BAD_PSPS)
def test_check_psp_name_rejects_malformed(bad):
    with pytest.raises(UnknownPspError) as info:
        check_psp_name(bad)
    assert repr(bad) in str(info.value)


def test_check_psp_name_accepts_plain_names():
    for name in ("stripe", "adyen", "mercado_pago", "psp2", "2c2p", "a" * 63):
        assert check_psp_name(name) == name


# -- ReconConfig ---------------------------------------------------------------------

FULL = {
    "psps": [
        "adyen",
        {"name": "stripe", "display_name": "Stripe BR", "status_mapping": {"CAPTURED": "captured"}},
    ],
    "thresholds": {"alert_amount_minor": 100_000, "per_psp": {"stripe": {"recovered_count": 5}}},
    "mapping": {"payment_transactions": {"table": "billing.tx"}},
    "match_grace_minutes": 30,
    "max_window_days": 7,
    "work_mem": "64MB",
}


def _check_full(config: ReconConfig) -> None:
    assert config.psp_names == ["adyen", "stripe"]
    stripe = config.psp("stripe")
    assert stripe.display_name == "Stripe BR"
    assert stripe.status_mapping == {"CAPTURED": "captured"}
    assert stripe.connection_id == "psp_stripe"
    assert config.psp("adyen").display_name == "adyen"
    assert config.psp("adyen").status_mapping == {}
    assert config.thresholds.default.alert_amount_minor == 100_000
    assert config.thresholds.for_psp("stripe").recovered_count == 5
    assert config.mapping.transactions.table == TableRef("tx", "billing")
    assert config.match_grace == timedelta(minutes=30)
    assert config.max_window == timedelta(days=7)
    assert config.statement_work_mem == "64MB"


def test_defaults():
    config = ReconConfig()
    assert config.psps == ()
    assert config.match_grace == timedelta(hours=1)
    assert config.max_window == timedelta(days=31)
    assert config.mapping == TableMapping()
    assert config.thresholds == ThresholdPolicy()
    assert ReconConfig.from_dict({}) == config


def test_from_dict():
    _check_full(ReconConfig.from_dict(FULL))


def test_from_dict_copies_status_mapping():
    source = {"psps": [{"name": "stripe", "status_mapping": {"A": "a"}}]}
    config = ReconConfig.from_dict(source)
    source["psps"][0]["status_mapping"]["B"] = "b"
    assert config.psp("stripe").status_mapping == {"A": "a"}


def test_load_json_file(tmp_path):
    path = tmp_path / "recon.json"
    path.write_text(json.dumps(FULL))
    _check_full(ReconConfig.load(str(path)))


def test_load_inline_json():
    _check_full(ReconConfig.load(json.dumps(FULL)))
    _check_full(ReconConfig.load("  \n" + json.dumps(FULL, indent=2)))


def test_load_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CONFIG_ENV, json.dumps(FULL))
    _check_full(ReconConfig.load())
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"psps": ["zoop"]}))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert ReconConfig.load().psp_names == ["zoop"]
    monkeypatch.delenv(CONFIG_ENV)
    assert ReconConfig.load() == ReconConfig()
    assert ReconConfig.load("") == ReconConfig()


@pytest.mark.parametrize("text", ['{"psps": ["stripe"]', "{psps: []}", "{'psps': []}", '{"psps": [}'])
def test_load_bad_inline_json(text):
    with pytest.raises(ConfigError, match="not valid JSON"):
        ReconConfig.load(text)


def test_load_bad_json_file(tmp_path):
    path = tmp_path / "recon.json"
    path.write_text('{"psps": ["stripe",]}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        ReconConfig.load(str(path))


def test_load_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="not a file"):
        ReconConfig.load(str(missing))
    with pytest.raises(ConfigError, match="not a file"):
        ReconConfig.load(str(tmp_path))


def test_load_json_that_is_not_an_object(tmp_path):
    path = tmp_path / "recon.json"
    path.write_text('["stripe"]')
    with pytest.raises(ConfigError, match="JSON object"):
        ReconConfig.load(str(path))


def test_unknown_keys():
    with pytest.raises(ConfigError, match="psp_list"):
        ReconConfig.from_dict({"psp_list": ["stripe"]})
    with pytest.raises(ConfigError, match="status_mappings"):
        ReconConfig.from_dict({"psps": [{"name": "stripe", "status_mappings": {"A": "a"}}]})


def test_duplicate_psps():
    with pytest.raises(ConfigError, match="duplicates"):
        ReconConfig.from_dict({"psps": ["stripe", {"name": "stripe"}]})


@pytest.mark.parametrize(
    "data",
    [
        {"psps": ["Stripe"]},
        {"psps": ["stripe'; DROP TABLE payment_intents; --"]},
        {"psps": [{"display_name": "no name"}]},
        {"psps": [5]},
        {"psps": [{"name": "stripe", "status_mapping": {"A": 1}}]},
        {"psps": [{"name": "stripe", "status_mapping": ["A", "a"]}]},
        {"match_grace_minutes": -1},
        {"match_grace_minutes": 1.5},
        {"match_grace_minutes": "60"},
        {"max_window_days": 0},
        {"max_window_days": True},
        {"work_mem": "lots"},
        {"work_mem": "256MB'; SET role postgres; --"},
        {"work_mem": "256MB\n"},
        {"thresholds": {"alert_amount_minor": -5}},
        {"thresholds": []},
    ],
)
def test_invalid_configuration(data):
    with pytest.raises(ConfigError):
        ReconConfig.from_dict(data)


@pytest.mark.parametrize("data", [{"mapping": {"payment_intents": {"table": "x; DROP TABLE y"}}}])
def test_invalid_mapping_in_configuration(data):
    with pytest.raises(MappingError, match=re.escape("'x; DROP TABLE y'")):
        ReconConfig.from_dict(data)


def test_psp_config_rejects_bad_names_as_config_error():
    with pytest.raises(ConfigError, match="Bad"):
        PspConfig(name="Bad")


# -- resolve_psp ---------------------------------------------------------------------


def test_resolve_configured_psp():
    config = ReconConfig.from_dict(FULL)
    assert config.resolve_psp("stripe").status_mapping == {"CAPTURED": "captured"}
    # the configured list wins over the database
    assert config.resolve_psp("adyen", known_in_database=set()).name == "adyen"
    with pytest.raises(UnknownPspError, match="configured PSPs: adyen, stripe") as info:
        config.resolve_psp("zoop", known_in_database={"zoop"})
    assert "'zoop'" in str(info.value)


def test_resolve_database_known_psp():
    config = ReconConfig()
    resolved = config.resolve_psp("zoop", known_in_database={"zoop", "stripe"})
    assert resolved == PspConfig(name="zoop")
    assert resolved.status_mapping == {}
    with pytest.raises(UnknownPspError, match="PSPs seen in payment_intents: stripe, zoop"):
        config.resolve_psp("adyen", known_in_database={"zoop", "stripe"})
    with pytest.raises(UnknownPspError, match="none"):
        config.resolve_psp("adyen", known_in_database=set())
    with pytest.raises(UnknownPspError):
        config.resolve_psp("adyen")


@pytest.mark.parametrize("bad", BAD_PSPS)
def test_resolve_malformed_psp_names(bad):
    # even when the malformed value is "known" (configured list empty, database set holds it)
    for config in (ReconConfig(), ReconConfig.from_dict({"psps": ["stripe"]})):
        with pytest.raises(UnknownPspError):
            config.resolve_psp(bad, known_in_database={bad} if isinstance(bad, str) else None)
    with pytest.raises(UnknownPspError):
        ReconConfig().psp(bad)
