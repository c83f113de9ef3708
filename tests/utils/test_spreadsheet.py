"""CSV cells that a spreadsheet would run as formulas are neutralised."""

from __future__ import annotations

import csv
import io

import pytest

from app.utils.spreadsheet import csv_text, neutralise_cell


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("board 1.png", "board 1.png"),
        ("a=b", "a=b"),
        (-3, -3),
        (0.25, 0.25),
        (None, ""),
    ],
)
def test_formula_cells_get_a_leading_quote(value: object, written: object) -> None:
    assert neutralise_cell(value) == written


def test_csv_text_neutralises_every_cell_and_reads_back() -> None:
    text = csv_text(["name", "n"], [["=1+1", 5], ["ok", -1]])
    assert list(csv.reader(io.StringIO(text))) == [["name", "n"], ["'=1+1", "5"], ["ok", "-1"]]
