"""Divergence kinds (DESIGN section 3) and the runbook's thresholds (DESIGN section 4)."""

from __future__ import annotations

import pytest

from airflow_recon_provider.reconciliation import (
    ALL_KINDS,
    AlertReason,
    ConfigError,
    DivergenceKind,
    DivergenceKindError,
    ReconConfig,
    ThresholdPolicy,
    Thresholds,
    parse_kinds,
)

# -- kinds ---------------------------------------------------------------------------


def test_kind_order_is_the_decision_order():
    assert [k.value for k in ALL_KINDS] == [
        "duplicate_in_gateway",
        "duplicate_in_statement",
        "missing_in_statement",
        "missing_in_gateway",
        "currency_mismatch",
        "amount_mismatch",
        "status_mismatch",
    ]
    assert [k.rank for k in ALL_KINDS] == list(range(7))
    assert str(DivergenceKind.AMOUNT_MISMATCH) == "amount_mismatch"
    assert DivergenceKind.MISSING_IN_GATEWAY.label == "missing in gateway"


@pytest.mark.parametrize("empty", [None, "", " , ,", [], ["", "  "]])
def test_parse_kinds_empty_means_all(empty):
    assert parse_kinds(empty) == ALL_KINDS


def test_parse_kinds_string_and_list_in_canonical_order_without_duplicates():
    assert parse_kinds("status_mismatch, duplicate_in_gateway") == (
        DivergenceKind.DUPLICATE_IN_GATEWAY,
        DivergenceKind.STATUS_MISMATCH,
    )
    assert parse_kinds(["amount_mismatch", "amount_mismatch", " missing_in_gateway "]) == (
        DivergenceKind.MISSING_IN_GATEWAY,
        DivergenceKind.AMOUNT_MISMATCH,
    )
    assert parse_kinds(ALL_KINDS) == ALL_KINDS


def test_parse_kinds_lists_every_unknown_kind():
    with pytest.raises(DivergenceKindError) as info:
        parse_kinds("amount_mismatch,bogus,Status_Mismatch,x'; DROP TABLE payment_transactions; --")
    message = str(info.value)
    assert "'bogus'" in message
    assert "'Status_Mismatch'" in message
    assert "DROP TABLE payment_transactions" in message
    assert "'amount_mismatch'" not in message.split(";")[0]
    # the valid choices are listed so the analyst can fix the input
    assert "expected any of" in message and "status_mismatch" in message


def test_parse_kinds_error_is_a_recon_error_and_value_error():
    with pytest.raises(ValueError):
        parse_kinds(["nope"])


# -- alert ---------------------------------------------------------------------------


def test_default_thresholds_are_the_runbooks():
    t = Thresholds()
    assert (t.alert_amount_minor, t.alert_lag_cycles) == (500_000, 2)
    assert (t.recovered_amount_minor, t.recovered_count, t.recovered_successful_runs) == (50_000, 10, 2)


@pytest.mark.parametrize(
    ("amount", "lag", "reasons"),
    [
        (0, 0, []),
        (500_000, 2, []),  # exactly R$ 5.000 and exactly 2 cycles: not yet
        (500_001, 2, [AlertReason.AMOUNT]),
        (500_000, 3, [AlertReason.LAG]),
        (500_001, 3, [AlertReason.AMOUNT, AlertReason.LAG]),
        (0, None, [AlertReason.LAG]),  # never reconciled is lag
        (10**15, None, [AlertReason.AMOUNT, AlertReason.LAG]),
    ],
)
def test_alert_strictly_above(amount, lag, reasons):
    t = Thresholds()
    assert t.alert_reasons(divergent_amount_minor=amount, lag_cycles=lag) == reasons
    assert t.should_alert(divergent_amount_minor=amount, lag_cycles=lag) is bool(reasons)


# -- recovery ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "count", "expected"),
    [
        (0, 0, True),
        (49_999, 9, True),
        (50_000, 0, False),  # R$ 500 exactly is not below R$ 500
        (0, 10, False),
        (49_999, 10, False),
        (50_001, 9, False),
    ],
)
def test_amounts_recovered_strictly_below(amount, count, expected):
    assert Thresholds().amounts_recovered(divergent_amount_minor=amount, divergent_count=count) is expected


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        (["success", "success"], True),
        (["success", "success", "failed"], True),  # only the two latest count
        (["success", "failed"], False),
        (["failed", "success", "success"], False),
        (["success"], False),
        ([], False),
        (["running", "success"], False),
    ],
)
def test_recovered_needs_the_two_latest_runs_successful(runs, expected):
    t = Thresholds()
    assert t.is_recovered(divergent_amount_minor=0, divergent_count=0, latest_run_states=runs) is expected


def test_recovered_needs_amount_count_and_runs_together():
    t = Thresholds()
    ok_runs = ["success", "success"]
    assert not t.is_recovered(divergent_amount_minor=50_000, divergent_count=0, latest_run_states=ok_runs)
    assert not t.is_recovered(divergent_amount_minor=0, divergent_count=10, latest_run_states=ok_runs)
    assert t.is_recovered(divergent_amount_minor=49_999, divergent_count=9, latest_run_states=ok_runs)


# -- configuration -------------------------------------------------------------------


def test_policy_defaults_and_per_psp_overrides():
    policy = ThresholdPolicy.from_dict(
        {
            "alert_amount_minor": 1_000_000,
            "per_psp": {
                "stripe": {"alert_amount_minor": 100},
                "adyen": {"recovered_successful_runs": 3, "alert_lag_cycles": 0},
            },
        }
    )
    assert policy.default == Thresholds(alert_amount_minor=1_000_000)
    # an override starts from the site's defaults, not from the runbook's
    assert policy.for_psp("stripe") == Thresholds(alert_amount_minor=100)
    assert policy.for_psp("adyen") == Thresholds(
        alert_amount_minor=1_000_000, recovered_successful_runs=3, alert_lag_cycles=0
    )
    assert policy.for_psp("unknown") is policy.default
    assert policy.for_psp("stripe").should_alert(divergent_amount_minor=101, lag_cycles=0)
    assert not policy.default.should_alert(divergent_amount_minor=101, lag_cycles=0)
    assert policy.for_psp("adyen").should_alert(divergent_amount_minor=0, lag_cycles=1)
    assert not policy.for_psp("adyen").is_recovered(
        divergent_amount_minor=0, divergent_count=0, latest_run_states=["success", "success", "failed"]
    )


def test_policy_from_nothing_is_the_runbook():
    assert ThresholdPolicy.from_dict(None) == ThresholdPolicy()
    assert ThresholdPolicy.from_dict({}).default == Thresholds()


def test_thresholds_through_recon_config():
    config = ReconConfig.from_dict(
        {"psps": ["stripe"], "thresholds": {"per_psp": {"stripe": {"recovered_count": 3}}}}
    )
    assert config.thresholds.for_psp("stripe").recovered_count == 3
    assert config.thresholds.for_psp("adyen").recovered_count == 10


@pytest.mark.parametrize(
    "bad",
    [-1, 1.5, 500000.0, "500000", None, True, False],
)
def test_bad_threshold_values_rejected(bad):
    with pytest.raises(ConfigError, match="alert_amount_minor"):
        Thresholds(alert_amount_minor=bad)
    with pytest.raises(ConfigError, match="alert_amount_minor"):
        ThresholdPolicy.from_dict({"alert_amount_minor": bad})
    with pytest.raises(ConfigError, match="alert_amount_minor"):
        ThresholdPolicy.from_dict({"per_psp": {"stripe": {"alert_amount_minor": bad}}})


@pytest.mark.parametrize(
    "data",
    [
        {"alert_amount": 1},
        {"per_psp": {"stripe": {"alert_amount": 1}}},
        {"per_psp": {"stripe": 5}},
        {"per_psp": ["stripe"]},
        {"per_psp": "stripe"},
        ["alert_amount_minor", 1],
        "alert_amount_minor=1",
    ],
)
def test_malformed_threshold_config_is_a_config_error(data):
    with pytest.raises(ConfigError, match="threshold"):
        ThresholdPolicy.from_dict(data)
    with pytest.raises(ConfigError):
        ReconConfig.from_dict({"thresholds": data})
