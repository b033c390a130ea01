"""Templated inputs — form fields and rendered templates — read one way by every operator.

A Jinja template renders a missing value as ``""``, ``"None"`` or ``"null"``; a boolean
param arrives as ``True``/``False`` or as text (``"true"``, ``"0"``...). Each reader here
takes those, and refuses anything else with an :class:`InputError` that names the field.
Pure: no Airflow, no database.
"""

from __future__ import annotations

import ast
from typing import Any

from airflow_recon_provider.reconciliation.errors import DivergenceKindError, ReconError
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind, parse_kinds

#: how a missing value renders (compared without case and surrounding spaces)
BLANK_TEXTS = frozenset({"", "none", "null"})
TRUE_TEXTS = frozenset({"true", "1", "yes", "y", "on"})
FALSE_TEXTS = frozenset({"false", "0", "no", "n", "off"})


class InputError(ReconError):
    """A templated input (a form field, a rendered template, a DAG run's conf value) is
    malformed; nothing was read or written."""


def blank(value: Any) -> bool:
    """Whether a templated value is missing: ``None``, or a text that renders nothing."""
    return value is None or (isinstance(value, str) and value.strip().lower() in BLANK_TEXTS)


def parse_bool(value: Any, *, name: str) -> bool:
    """A boolean from a param or a rendered template; blank is ``False``.

    :raises InputError: anything but ``true/false``, ``1/0``, ``yes/no``, ``y/n``, ``on/off``.
    """
    if isinstance(value, bool):
        return value
    if blank(value):
        return False
    text = str(value).strip().lower()
    if text in TRUE_TEXTS:
        return True
    if text in FALSE_TEXTS:
        return False
    raise InputError(f"{name} must be true or false, got {value!r}")


def parse_kind_list(value: Any) -> tuple[DivergenceKind, ...]:
    """Divergence kinds from a list, ``"a,b"`` or a rendered list ``"['a', 'b']"``; blank or
    an empty list means every kind.

    :raises DivergenceKindError: a kind that does not exist, or a value that is no list.
    """
    if blank(value):
        return ALL_KINDS
    if isinstance(value, str) and value.strip().startswith(("[", "(")):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise DivergenceKindError(f"divergence kinds {value!r} are not a list of kind names") from None
    if isinstance(value, list | tuple) and not value:
        return ALL_KINDS
    if not isinstance(value, str | list | tuple):
        raise DivergenceKindError(f"divergence kinds {value!r} are not a list of kind names")
    return parse_kinds(value)


__all__ = ["BLANK_TEXTS", "FALSE_TEXTS", "TRUE_TEXTS", "InputError", "blank", "parse_bool", "parse_kind_list"]
