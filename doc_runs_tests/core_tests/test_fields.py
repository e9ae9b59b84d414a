"""Typed fields read offline: the bad inputs the issue names, each with its expected answer."""

import json
import os
import subprocess
import sys

import pytest

from doc_runs.core.fields.candidates import MIN_SCORE, best_sentence, find_candidates
from doc_runs.core.fields.dates import parse_date
from doc_runs.core.fields.spec import FieldSpecInvalid, field_spec, field_specs
from doc_runs.core.fields.values import Duration, ValueInvalid, normalize_value

DATE = field_spec("effective_date", {"type": "date", "description": "when it takes effect"})
PARTY = field_spec("parties", {"type": "party", "description": "who", "many": True})


def top(spec, text):
    found = find_candidates(spec, text)
    return found[0].value if found and found[0].score >= MIN_SCORE else None


def test_a_document_without_a_date_answers_null() -> None:
    assert find_candidates(DATE, "This agreement has no date in it, only 12 widgets.") == []


def test_of_conflicting_dates_the_cued_one_wins_and_an_end_date_loses() -> None:
    text = ("Board minutes of March 3, 2020. This Agreement is effective as of June 1, 2021 "
            "and shall continue until December 31, 2023.")
    ranked = find_candidates(DATE, text)
    assert ranked[0].value == "2021-06-01"
    assert [c.value for c in ranked][-1] == "2023-12-31"


@pytest.mark.parametrize(("written", "iso"), [
    ("05/06/2021", "2021-05-06"),  # month first, as US filings write it
    ("13/06/2021", "2021-06-13"),  # cannot be month first
    ("6th day of May, 2021", "2021-05-06"),
    ("the 6th of May 2021", "2021-05-06"),
    ("Sept. 5th, 2003", "2003-09-05"),
    ("2021-05-06", "2021-05-06"),
])
def test_dates_in_other_formats_are_read_as_iso(written, iso) -> None:
    assert top(DATE, f"This Agreement is dated {written}.") == iso
    assert normalize_value(DATE, written) == iso


@pytest.mark.parametrize("not_a_date", ["May 2021", "2021", "Feb. 30, 2020", "sometime"])
def test_partial_or_impossible_dates_are_not_dates(not_a_date) -> None:
    assert parse_date(not_a_date) is None
    with pytest.raises(ValueInvalid):
        normalize_value(DATE, not_a_date)


def test_a_two_column_signature_page_gives_both_signers() -> None:
    page = ("This Agreement is made by and between Acme Widgets, Inc. (\"Acme\") and "
            "Jane Q. Roe (\"Consultant\").\n\n"
            "ACME WIDGETS, INC.                 CONSULTANT\n"
            "By: /s/ John Smith                 /s/ Jane Q. Roe\n"
            "Name: John Smith                   Name: Jane Q. Roe\n"
            "Title: President\n")
    found = [c.value for c in find_candidates(PARTY, page)]
    assert found[:2] == ["Acme Widgets, Inc.", "Jane Q. Roe"]


def test_names_in_capitals_are_normalized_and_lose_their_roles() -> None:
    text = ("THIS AGREEMENT is entered into by and between NORTHWIND TRADERS LLC, a Delaware "
            "limited liability company (\"Northwind\"), and MARY ANN SMITH, M.D. (\"Doctor\").")
    assert [c.value for c in find_candidates(PARTY, text)][:2] == [
        "Northwind Traders LLC", "Mary Ann Smith"]
    assert normalize_value(PARTY, "JOHN Q. PUBLIC, Chief Executive Officer") == "John Q. Public"


def test_a_type_the_document_does_not_hold_is_null_never_a_guess() -> None:
    text = "Minutes. The committee met and agreed to meet again. Nobody objected."
    for kind in ("date", "duration", "money", "number", "place", "person", "organization"):
        spec = field_spec("f", {"type": kind, "description": "something"})
        assert top(spec, text) is None, kind
    unrelated = field_spec("renewal", "automatic renewal of the subscription")
    assert best_sentence(unrelated, text) is None


def test_durations_are_amount_and_unit() -> None:
    term = field_spec("term", {"type": "duration", "description": "how long it lasts"})
    text = "1. Term. This Agreement shall remain in effect for two (2) years from the date hereof."
    assert top(term, text) == Duration(amount=2, unit="years")
    assert str(normalize_value(term, {"amount": 18, "unit": "month"})) == "18 months"
    with pytest.raises(ValueInvalid, match="unit"):
        normalize_value(term, {"amount": 2, "unit": "fortnights"})


@pytest.mark.parametrize(("raw", "message"), [
    ({"type": "colour", "description": "d"}, "unknown type 'colour'; types: text, date"),
    ({"type": "enum", "description": "d"}, "needs its choices"),
    ({"type": "date", "description": "d", "choices": ["a"]}, "enum fields only"),
    ({"type": "date"}, "description"),
    ({"description": "d", "colour": "red"}, "colour"),
    (5, "give a description"),
])
def test_a_field_spec_that_cannot_be_answered_says_why(raw, message) -> None:
    with pytest.raises(FieldSpecInvalid, match=message):
        field_specs({"f": raw})


def test_an_unknown_field_type_stops_the_code_location_from_loading(tmp_path) -> None:
    env = {**os.environ, "DOC_RUNS_EXTRA_FIELDS": json.dumps(
        {"law": {"type": "jurisdiction", "description": "governing law"}})}
    loaded = subprocess.run([sys.executable, "-c", "import doc_runs.definitions"], env=env,
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert loaded.returncode != 0
    assert ("DOC_RUNS_EXTRA_FIELDS: field 'law': unknown type 'jurisdiction'"
            in loaded.stderr.splitlines()[-1])
