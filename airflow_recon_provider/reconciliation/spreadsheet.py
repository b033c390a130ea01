"""CSV files that people open in a spreadsheet (the dry-run CSV finance reads before
approving, the ticket CSV sent to a PSP): text from the data must stay text.

A PSP reference or status such as ``=HYPERLINK("http://x", "ok")`` or ``@SUM(A1)`` would run
as a formula in Excel, LibreOffice or Google Sheets (CSV injection). Such cells get a leading
apostrophe, which those programs show as text. Numbers (amounts are ``int``) are left alone,
so a negative amount stays a number.
"""

from __future__ import annotations

from typing import Any

#: first characters that make a spreadsheet read a cell as a formula or a command
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` for a CSV cell: ``None`` as empty, formula-like text prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def safe_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every cell of a CSV row through :func:`safe_cell`."""
    return {key: safe_cell(value) for key, value in row.items()}
