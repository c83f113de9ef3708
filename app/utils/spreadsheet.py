"""CSV files the agent writes, safe to open in a spreadsheet (OWASP "CSV injection").

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets; such a cell gets a leading `'`,
which the spreadsheet shows as text. Numbers are written as numbers (a negative
number stays a number). Source: https://owasp.org/www-community/attacks/CSV_Injection
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: object) -> object:
    """A CSV cell value that no spreadsheet runs as a formula (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A whole CSV document (`\\n` line ends, minimal quoting), every cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([neutralise_cell(h) for h in header])
    writer.writerows([neutralise_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def csv_line(row: Sequence[object]) -> str:
    """One CSV line (ending in `\\n`), every cell neutralised: for streaming a CSV row by row
    with the same output as `csv_text`."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([neutralise_cell(cell) for cell in row])
    return out.getvalue()
