"""Typed fields read offline: the bad inputs the issue names, each with its expected answer."""

import json
import os
import subprocess
import sys

import pytest

from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.findings import (
    DefaultFieldTaken,
    FindingsInvalid,
    extra_field_specs,
    validate_findings,
)
from doc_runs.core.agent.ledger import DocumentLedger, Pricing
from doc_runs.core.agent.loop import AgentLimits, FindingsAgent
from doc_runs.core.agent.offline import OfflineBackend
from doc_runs.core.agent.tools import DocumentTools
from doc_runs.core.chunking import ChunkingConfig, PagedText, chunk_text
from doc_runs.core.fields.candidates import find_candidates, pick_one
from doc_runs.core.fields.dates import find_dates, parse_date
from doc_runs.core.fields.durations import find_durations
from doc_runs.core.fields.spec import FieldSpecInvalid, field_spec, field_specs
from doc_runs.core.fields.values import Duration, Money, ValueInvalid, normalize_value
from doc_runs.core.store import DocumentStore
from doc_runs.queue.envelope import Options

DATE = field_spec("effective_date", {"type": "date", "description": "when it takes effect"})
PARTY = field_spec("parties", {"type": "party", "description": "who", "many": True})


def top(spec, text):
    chosen = pick_one(find_candidates(spec, text), spec)
    return chosen[0].value if chosen else None


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
    assert find_candidates(unrelated, text) == []


def test_a_text_field_gets_the_sentence_about_it_or_nothing() -> None:
    text = ("This Services Agreement is between the Vendor and the Client. The Vendor serves "
            "the Client from its offices. The Client pays the Vendor monthly. Either party "
            "may terminate this Agreement for convenience on ninety days' notice.")
    termination = field_spec("termination", "how either party can end the agreement")
    assert "terminate this Agreement" in find_candidates(termination, text)[0].value
    # Vendor and Client are in every sentence: sharing them says nothing.
    data = field_spec("data_protection", "how the vendor protects client data")
    assert find_candidates(data, text) == []


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
    ({"description": "  "}, "description must not be blank"),
    ({"description": "d", "many": "yes"}, "many"),
    ({"description": "d", "type": "enum", "choices": ["Gold", "gold"]}, "choices must differ"),
    ({"description": "d", "hint": "effective as of"}, "hint must be a list of phrases"),
])
def test_a_field_spec_that_cannot_be_answered_says_why(raw, message) -> None:
    with pytest.raises(FieldSpecInvalid, match=message):
        field_specs({"f": raw})


@pytest.mark.processes
def test_an_unknown_field_type_stops_the_code_location_from_loading(tmp_path) -> None:
    from doc_runs_tests.batches import LOAD_DEFINITIONS

    env = {**os.environ, "DOC_RUNS_EXTRA_FIELDS": json.dumps(
        {"law": {"type": "jurisdiction", "description": "governing law"}})}
    loaded = subprocess.run([sys.executable, "-c", LOAD_DEFINITIONS], env=env,
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert loaded.returncode != 0
    said = loaded.stderr.splitlines()[-1]
    assert "invalid setting: DOC_RUNS_EXTRA_FIELDS='{" in said
    assert "a wrong field: field 'law': unknown type 'jurisdiction'" in said


@pytest.mark.parametrize(("written", "amount", "currency"), [
    ("EUR 3.500,00", 3500, "EUR"), ("25.000,00 EUR", 25000, "EUR"),
    ("10 000 euros", 10000, "EUR"), ("CHF 1'000", 1000, "CHF"), ("INR 1,00,000", 100000, "INR"),
    ("A$100", 100, "AUD"), ("C$ 4,000", 4000, "CAD"), ("US$ 7,500", 7500, "USD"),
    ("£ 3m", 3_000_000, "GBP"), ("USD 2.5 million", 2_500_000, "USD"), ("$12,500.00", 12500, "USD"),
])
def test_money_in_the_usual_national_formats(written, amount, currency) -> None:
    money = field_spec("fee", {"type": "money", "description": "the fee"})
    assert normalize_value(money, written) == Money(amount=amount, currency=currency)


@pytest.mark.parametrize(("written", "iso"), [
    ("01.06.2021", "2021-06-01"),  # dots: day first
    ("2021/05/06", "2021-05-06"), ("6-May-2021", "2021-05-06"),
    ("the sixth day of May, 2021", "2021-05-06"), ("May the 6th, 2021", "2021-05-06"),
    ("the twenty-first day of June, 2004", "2004-06-21"),
])
def test_more_date_formats(written, iso) -> None:
    assert [d.value.isoformat() for d in find_dates(f"Signed {written}.")] == [iso]


def test_section_numbers_and_long_numbers_are_not_dates() -> None:
    assert find_dates("See sections 1.1.15 and 2.1.21 of version 10.4.22; May 6, 20210.") == []


@pytest.mark.parametrize(("written", "amount", "unit"), [
    ("two and a half years", 2.5, "years"), ("24 mos.", 24, "months"), ("2 yrs", 2, "years"),
    ("eighteen (18) months", 18, "months"),
])
def test_durations_in_words_and_abbreviations(written, amount, unit) -> None:
    assert [(d.amount, d.unit) for d in find_durations(f"for {written} after")] == [
        (amount, unit)]


def test_a_long_run_of_number_words_is_read_in_linear_time() -> None:
    # Quadratic once (40 s for 8,000 words); linear, this is a fraction of a second.
    found = find_durations("one " * 50_000 + "years")
    assert [(d.amount, d.unit) for d in found] == [(7, "years")]  # the last seven words


@pytest.mark.parametrize("number", [float("nan"), float("inf"), 10 ** 400, "1e999"])
def test_numbers_that_cannot_be_stored_are_refused(number) -> None:
    for spec, value in [(field_spec("n", {"type": "number", "description": "n"}), number),
                        (field_spec("m", {"type": "money", "description": "m"}),
                         {"amount": number, "currency": "USD"}),
                        (field_spec("d", {"type": "duration", "description": "d"}),
                         {"amount": number, "unit": "years"})]:
        with pytest.raises(ValueInvalid, match="not a finite number"):
            normalize_value(spec, value)


def test_a_models_loose_but_readable_values_are_accepted() -> None:
    duration = field_spec("d", {"type": "duration", "description": "d"})
    assert normalize_value(duration, {"amount": "2", "unit": "Years"}) == Duration(
        amount=2, unit="years")
    assert normalize_value(DATE, 20210506) == "2021-05-06"
    number = field_spec("n", {"type": "number", "description": "n"})
    assert [normalize_value(number, v) for v in ("-3.5", "1.234,56", "1e6")] == [
        -3.5, 1234.56, 1e6]
    person = field_spec("p", {"type": "person", "description": "p"})
    assert normalize_value(person, "ŁUKASZ NOWAK") == "Łukasz Nowak"
    assert normalize_value(person, "José Álvarez") == "José Álvarez"
    assert normalize_value(PARTY, "IBM") == "IBM"
    place = field_spec("where", {"type": "place", "description": "where"})
    assert [normalize_value(place, v) for v in ("Zürich", "São Paulo", "Île-de-France")] == [
        "Zürich", "São Paulo", "Île-de-France"]


def test_signers_side_by_side_and_names_in_capitals_with_their_legal_form() -> None:
    page = ("INITECH SOFTWARE SOLUTIONS, INC., a Texas corporation (\"Initech\") and Dupont "
            "Conseil SARL (\"Dupont\") sign below.\n\n"
            "Name: HANK SCORPIO            Name: BILL LUMBERGH\n")
    assert [c.value for c in find_candidates(PARTY, page)][:2] == [
        "Initech Software Solutions, Inc.", "Dupont Conseil SARL"]
    signers = field_spec("signers", {"type": "person", "description": "who signs",
                                     "many": True})
    assert {c.value for c in find_candidates(signers, page)} == {"Hank Scorpio",
                                                                 "Bill Lumbergh"}


CLAUSES = ("1. Term. This Agreement is effective as of March 1, 2020 and shall remain in "
           "effect for three (3) years from the date hereof. It expires on December 31, 2025. "
           "2. Fees. The Client pays an hourly rate of USD 150 and a travel cap of £2,000. "
           "3. Notice. Either party may end this Agreement on thirty (30) days' prior written "
           "notice. 4. The Company employs 42 people. 5. This Agreement is governed by the "
           "laws of England and Wales.")


@pytest.mark.parametrize(("raw", "expected"), [
    ({"type": "duration", "description": "notice needed to end it"},
     Duration(amount=30, unit="days")),
    ({"type": "date", "description": "when it expires", "hint": ["expires on"]}, "2025-12-31"),
    ({"type": "date", "description": "when it takes effect"}, "2020-03-01"),
    ({"type": "money", "description": "the travel cap"}, Money(amount=2000, currency="GBP")),
    ({"type": "number", "description": "how many people the company employs"}, 42.0),
    # Nothing in the document is about these: null, not the nearest value of the type.
    ({"type": "money", "description": "the late fee"}, None),
    ({"type": "money", "description": "deposit", "hint": ["security deposit"]}, None),
    ({"type": "place", "description": "the seat of arbitration"}, None),
    ({"type": "enum", "description": "kind of lease", "choices": ["lease", "company"]}, None),
])
def test_a_field_is_read_by_what_it_is_about(raw, expected) -> None:
    assert top(field_spec("f", raw), CLAUSES) == expected


def test_an_extra_field_cannot_take_a_default_fields_name() -> None:
    with pytest.raises(DefaultFieldTaken, match="'dates' is a default field"):
        extra_field_specs({"dates": {"type": "text", "description": "mine"}})
    with pytest.raises(ValueError, match="'dates' is a default field"):
        Options(extra_fields={"dates": "mine"})


def test_find_values_reads_a_huge_documents_start_and_end_and_says_so() -> None:
    opening = "This Agreement is effective as of May 6, 2021. "
    closing = "Signed on behalf of the parties. This Agreement is dated as of June 1, 2022."
    text = opening + "Nothing to see here at all. " * 50_000 + closing
    tools = DocumentTools(chunk_text("e" * 64, PagedText([(1, text)]), ChunkingConfig()),
                          {1: text}, max_result_chars=100_000)
    result = json.loads(tools.call("find_values", json.dumps(
        {"type": "date", "description": "the date it is dated", "k": 5})))
    assert result["read"].startswith("the first 800,000 and the last 200,000 of ")
    by_value = {v["display"]: v["chunk_id"] for v in result["values"]}
    assert set(by_value) == {"2021-05-06", "2022-06-01"}
    last = tools.ordered[-1]
    assert by_value["2022-06-01"] == last.id and "June 1, 2022" in last.text


def test_long_matching_sentences_still_answer_a_text_field(tmp_path) -> None:
    # Ten candidates of 300 characters would not fit in a tool result (it would be cut and
    # unreadable, leaving the field null).
    renewals = [f"The renewal of this subscription (clause {i}) happens automatically each "
                f"year unless the customer cancels it in writing, {'and so on ' * 20}."
                for i in range(8)]
    fillers = [f"Paragraph {i} describes the equipment, the staff and the premises in "
               f"detail, {'with more words ' * 15}." for i in range(30)]
    text = " ".join(fillers[:15] + renewals + fillers[15:])
    pages = {1: text}
    tools = DocumentTools(chunk_text("e" * 64, PagedText([(1, text)]), ChunkingConfig()), pages)
    ledger = DocumentLedger(Pricing(), 0, None)
    client = ModelClient(OfflineBackend(), DocumentStore(tmp_path), ledger)
    renewal = field_spec("renewal", "how the subscription renews")
    findings = FindingsAgent(client, tools, [renewal], AgentLimits(), "e" * 64).run()
    assert findings.fields["renewal"].display().startswith("The renewal of this subscription")


def test_a_table_of_numbers_is_read_in_linear_time() -> None:
    # Space-separated three-digit numbers look like one number with thousands separators that
    # never ends: unbounded groups made this quadratic (a 200 kB appendix spun for an hour).
    table = " ".join(str(100 + (i * 7919) % 900) for i in range(50_000))
    text = f"The price is $12,500 per shipment.\n{table}"
    money = field_spec("price", {"type": "money", "description": "the price per shipment"})
    assert top(money, text) == Money(amount=12500, currency="USD")


@pytest.mark.parametrize(("kind", "junk"), [
    ("number", "Section 12"), ("number", "N/A (see 5.2)"), ("number", "2021-05-06"),
    ("money", "12 pounds of flour"), ("money", {"amount": "N/A 5", "currency": "EUR"}),
    ("duration", "-2 years"), ("duration", {"amount": 1e12, "unit": "years"}),
    ("person", "Title: CEO"), ("person", "N/A"), ("person", "the Company"), ("person", "x"),
    ("text", "\u200b"), ("text", "x" * 2001),
])
def test_a_models_junk_is_refused_not_stored(kind, junk) -> None:
    with pytest.raises(ValueInvalid):
        normalize_value(field_spec("f", {"type": kind, "description": "f"}), junk)


def test_every_wrong_field_is_named_in_one_answer_and_odd_payloads_are_refused() -> None:
    fields = [field_spec("a", {"type": "date", "description": "a"}),
              field_spec("b", {"type": "number", "description": "b"})]
    both_wrong = json.dumps({"a": [{"value": "soon", "citations": []}],
                             "b": [{"value": "many", "citations": []}]})
    with pytest.raises(FindingsInvalid, match=r"a \(date\).*; b \(number\)"):
        validate_findings(both_wrong, fields, set(), {1})
    for citation in ("p²", "p01", "p0"):
        cited = json.dumps({"a": [{"value": "2021-05-06", "citations": [citation]}], "b": []})
        with pytest.raises(FindingsInvalid, match="does not exist"):
            validate_findings(cited, fields, set(), {1, 2})
    with pytest.raises(FindingsInvalid, match="nested too deeply"):
        validate_findings("[" * 200_000, fields, set(), {1})


def test_names_ending_in_a_or_an_are_not_cut_and_a_role_field_wants_its_role() -> None:
    text = ("This Loan Agreement is made between Bank of America Corporation, a Delaware "
            "corporation (the \"Lender\"), and FIRST MERIDIAN BANK, N.A., a national banking "
            "association (the \"Borrower\").")
    assert [c.value for c in find_candidates(PARTY, text)][:2] == [
        "Bank of America Corporation", "First Meridian Bank, N.A."]
    lender = field_spec("lender", {"type": "party", "description": "the lender"})
    borrower = field_spec("borrower", {"type": "party", "description": "who borrows",
                                       "hint": ["Borrower"]})
    employee = field_spec("employee", {"type": "person", "description": "the employee"})
    assert top(lender, text) == "Bank of America Corporation"
    assert top(borrower, text) == "First Meridian Bank, N.A."
    assert top(employee, text) is None


def test_numbers_ending_a_sentence_keep_their_digits_and_more_formats() -> None:
    rate = field_spec("interest_rate", {"type": "number", "description": "the interest rate"})
    assert top(rate, "The interest rate is 6.75. Interest accrues daily.") == 6.75
    assert [d.value.isoformat() for d in find_dates("Due 20/01/2024 or 31-01-2024.")] == [
        "2024-01-20", "2024-01-31"]
    rent = field_spec("rent", {"type": "money", "description": "the monthly rent"})
    assert top(rent, "The monthly rent is 4.800,00 €.") == Money(
        amount=4800, currency="EUR")
    assert normalize_value(rent, "R$ 1.500,00") == Money(amount=1500, currency="BRL")


def test_the_cut_of_a_huge_document_joins_no_value_across_it() -> None:
    head = "Filler words here. " * 42_104 + "It is effective as of May 1,"
    text = head + " " * (800_000 - len(head)) + "x" * 42_000 + "2021 revenue was good. " * 8_700
    tools = DocumentTools(chunk_text("e" * 64, PagedText([(1, text)]), ChunkingConfig()),
                          {1: text}, max_result_chars=100_000)
    result = json.loads(tools.call("find_values", json.dumps(
        {"type": "date", "description": "when it takes effect", "k": 5})))
    assert result["read"].startswith("the first 800,000") and result["values"] == []


@pytest.mark.parametrize(("written", "name"), [
    ("Bank of America Executive Services Inc", "Bank of America Executive Services Inc"),
    ("Acme Director Services LLC", "Acme Director Services LLC"),
    ("Jane Roe, Chief Executive Officer", "Jane Roe"),
    ("John Smith Title: CEO", "John Smith"),
    ("A. Ruegsegger Title", "A. Ruegsegger"),
])
def test_a_role_word_inside_a_name_is_part_of_it(written, name) -> None:
    assert normalize_value(PARTY, written) == name
