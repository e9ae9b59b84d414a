"""The findings-quality scorer (bench/kleister.py): Kleister's format and its F1."""

import lzma

import pytest

from bench.kleister import (
    format_pairs,
    kleister_value,
    parse_pairs,
    read_expected,
    read_file_names,
    score,
)


def test_values_are_written_the_kleister_way() -> None:
    assert kleister_value("Leonard Green & Partners, L.P.") == "Leonard_Green_and_Partners_LP"
    assert kleister_value("Coupa Software Incorporated") == "Coupa_Software_Inc."
    assert kleister_value("R. J. Seifert Enterprises") == "R._J._Seifert_Enterprises"
    assert kleister_value("2 years") == "2_years"
    assert format_pairs({"party": ["Nike, Inc.", "Nike, Inc."], "term": []}) == \
        "party=Nike_Inc."


def test_f1_per_key_is_micro_averaged_on_upper_cased_values() -> None:
    expected = [parse_pairs("party=Nike_Inc. party=Eric_Dean_Sprunk jurisdiction=Oregon"),
                parse_pairs("party=Acme_LLC term=2_years")]
    predicted = [parse_pairs("party=NIKE_INC. jurisdiction=Washington"),
                 parse_pairs("party=Acme_LLC party=Other_Co. term=2_years")]
    scores = score(expected, predicted)
    assert (scores["party"].true_positives, scores["party"].predicted,
            scores["party"].expected) == (2, 3, 3)
    assert scores["party"].f1 == pytest.approx(2 / 3)
    assert scores["jurisdiction"].f1 == 0.0 and scores["term"].f1 == 1.0
    assert score([frozenset()], [frozenset()], keys=["term"])["term"].f1 == 0.0


def test_malformed_lines_and_mismatched_lengths_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a key=value pair"):
        parse_pairs("party")
    with pytest.raises(ValueError, match="1 expected lines but 2 predicted"):
        score([frozenset()], [frozenset(), frozenset()])
    expected = tmp_path / "expected.tsv"
    expected.write_text("party=A\n")
    with pytest.raises(FileNotFoundError, match="--names"):
        read_file_names(expected)
    with lzma.open(tmp_path / "in.tsv.xz", "wt") as handle:
        handle.write('a "quoted".pdf\tparty\ttext\n')
    assert read_file_names(expected) == ['a "quoted".pdf']


def test_bad_data_files_are_named_with_their_line(tmp_path) -> None:
    expected = tmp_path / "expected.tsv"
    expected.write_text("party=A\ngarbage\n")
    with pytest.raises(ValueError, match=r"expected\.tsv, line 2: not a key=value pair"):
        read_expected(expected)
    binary = tmp_path / "in.tsv.xz"
    binary.write_bytes(b"\xfd7zXZ\x00")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_expected(binary)
    binary.unlink()
    names = tmp_path / "names.tsv"
    names.write_text("a.pdf\n\n")
    with pytest.raises(ValueError, match=r"names\.tsv, line 2: no file name"):
        read_file_names(expected, names)
    with pytest.raises(FileNotFoundError, match=r"--names .*missing\.tsv: no such file"):
        read_file_names(expected, tmp_path / "missing.tsv")
