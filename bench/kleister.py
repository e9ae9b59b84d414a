"""Scoring findings the way the Kleister challenges do: per document a set of `key=value`
pairs (spaces written as underscores), compared upper-cased; per key precision, recall and
F1 over all documents (micro-averaged: true positives summed over documents)."""

from __future__ import annotations

import csv
import lzma
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Pairs = frozenset[tuple[str, str]]


def parse_pairs(line: str) -> Pairs:
    """`effective_date=2001-04-18 party=Nike_Inc.` -> {(key, VALUE)}, values upper-cased."""
    pairs = set()
    for item in line.split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"not a key=value pair: {item!r}")
        pairs.add((key, value.upper()))
    return frozenset(pairs)


def kleister_value(text: str) -> str:
    """A normalized value in Kleister's spelling: no commas, `&` as `and`, Incorporated and
    Limited as Inc. and Ltd., legal forms without inner full stops (L.P. as LP), spaces as
    underscores."""
    text = text.replace(",", " ").replace("&", " and ")
    text = re.sub(r"\bIncorporated\b", "Inc.", text)
    text = re.sub(r"\bLimited\b", "Ltd.", text)
    text = re.sub(r"\b((?:[A-Z]\.){2,})(?=\s|$)",
                  lambda m: m.group(1).replace(".", "")
                  if m.group(1).replace(".", "") in ("LP", "LLC", "LLP", "NV", "BV", "SA")
                  else m.group(1), text)
    return "_".join(text.split())


def format_pairs(values: Mapping[str, Iterable[str]]) -> str:
    return " ".join(f"{key}={kleister_value(v)}" for key, vs in sorted(values.items())
                    for v in dict.fromkeys(vs) if kleister_value(v))


@dataclass(frozen=True)
class FieldScore:
    key: str
    true_positives: int
    predicted: int
    expected: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.expected if self.expected else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score(expected: Sequence[Pairs], predicted: Sequence[Pairs],
          keys: Iterable[str] | None = None) -> dict[str, FieldScore]:
    if len(expected) != len(predicted):
        raise ValueError(f"{len(expected)} expected lines but {len(predicted)} predicted")
    keys = sorted(set(keys) if keys is not None else
                  {k for pairs in expected for k, _ in pairs})
    result = {}
    for key in keys:
        tp = pred = exp = 0
        for want, got in zip(expected, predicted, strict=True):
            want_k = {p for p in want if p[0] == key}
            got_k = {p for p in got if p[0] == key}
            tp += len(want_k & got_k)
            pred += len(got_k)
            exp += len(want_k)
        result[key] = FieldScore(key, tp, pred, exp)
    return result


def read_expected(path: Path) -> list[Pairs]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text (an expected.tsv, not in.tsv.xz?)") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        try:
            pairs.append(parse_pairs(line))
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
    return pairs


def read_file_names(expected_tsv: Path, names: Path | None = None) -> list[str]:
    """The document each line of expected.tsv is about: the first column of `in.tsv(.xz)`
    beside it (Kleister's layout), or of `names`."""
    if names is not None and not names.is_file():
        raise FileNotFoundError(f"--names {names}: no such file")
    candidates = [names] if names else [expected_tsv.with_name("in.tsv.xz"),
                                        expected_tsv.with_name("in.tsv")]
    for path in candidates:
        if path is not None and path.is_file():
            opener = lzma.open if path.suffix == ".xz" else open
            csv.field_size_limit(1 << 30)
            with opener(path, "rt", encoding="utf-8", newline="") as handle:
                rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
            for number, row in enumerate(rows, 1):
                if not row or not row[0].strip():
                    raise ValueError(f"{path}, line {number}: no file name in the first column")
            return [row[0] for row in rows]
    raise FileNotFoundError(
        f"no in.tsv.xz or in.tsv beside {expected_tsv} to say which document each line is "
        "about; pass --names FILE (first column: file names)")
