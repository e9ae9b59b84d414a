"""How right the findings are, per field, on labeled documents in the Kleister format.

    .venv/bin/python bench/findings_quality.py DOCS_DIR EXPECTED_TSV [--names IN_TSV]
        [--env NAME=VALUE ...] [--out PREDICTED_TSV] [--json-out FILE]

Runs `doc-runs process` (whatever backend the environment or `--env` selects) on a fresh
project over the documents EXPECTED_TSV is about (listed in the first column of the
`in.tsv.xz` beside it, or of --names; found by name in DOCS_DIR), reads each document's
findings, writes them as Kleister `key=value` pairs, and prints per field precision, recall
and F1 on upper-cased values (see bench/kleister.py). The fields asked for are Kleister-NDA's:
`party` is the default `parties` field; `effective_date`, `jurisdiction` and `term` are added
through DOC_RUNS_EXTRA_FIELDS as typed fields (date, place, duration); --fields replaces
them. A document that does not succeed counts as answering nothing.

The data (not committed: its annotations carry no license): `git clone
https://github.com/applicaai/kleister-nda`, then
    bench/findings_quality.py kleister-nda/documents kleister-nda/train/expected.tsv
Use the train split; dev-0 and test-A are kept for acceptance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kleister import (  # noqa: E402
    Pairs,
    format_pairs,
    parse_pairs,
    read_expected,
    read_file_names,
    score,
)
from bench.process_throughput import doc_runs_process  # noqa: E402
from doc_runs.core.agent.findings import extra_field_specs  # noqa: E402

KLEISTER_NDA_FIELDS = {
    "effective_date": {"type": "date", "description": "the date the agreement takes effect",
                       "hint": ["effective as of", "dated as of", "entered into as of"]},
    "jurisdiction": {"type": "place",
                     "description": "the state or country whose law governs the agreement",
                     "hint": ["governed by", "laws of"]},
    "term": {"type": "duration", "description": "how long the agreement lasts",
             "hint": ["term of this agreement"]},
}
# Kleister key -> the findings field that answers it.
KLEISTER_NDA_KEYS = {"party": "parties", "effective_date": "effective_date",
                     "jurisdiction": "jurisdiction", "term": "term"}


def predicted_pairs(store_root: Path, document_id: str | None,
                    keys: dict[str, str]) -> Pairs:
    from doc_runs.core.fields.values import display
    from doc_runs.core.stages import DocumentFindings
    from doc_runs.core.store import DocumentStore

    if document_id is None:
        return frozenset()
    try:
        raw = DocumentStore(str(store_root)).read_artifact(
            "document_findings", DocumentFindings.VERSION, document_id)
    except FileNotFoundError:
        return frozenset()
    findings = DocumentFindings.model_validate_json(raw).findings
    if findings is None:
        return frozenset()
    values = {key: [display(v.value) for v in findings.fields[name].values]
              for key, name in keys.items() if name in findings.fields}
    return parse_pairs(format_pairs(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("docs_dir", type=Path)
    parser.add_argument("expected_tsv", type=Path)
    parser.add_argument("--names", type=Path, help="file whose first column names the "
                        "document of each expected line (default: in.tsv.xz beside it)")
    parser.add_argument("--fields", help="DOC_RUNS_EXTRA_FIELDS to use (JSON)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", type=Path, help="write the predicted pairs here")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    for path in (args.docs_dir,):
        if not path.is_dir():
            parser.error(f"{path} is not a folder")
    if not args.expected_tsv.is_file():
        parser.error(f"{args.expected_tsv} is not a file")
    for out in (args.out, args.json_out):
        # Checked before a run of minutes, not after it.
        if out is not None and not (out.parent.is_dir() and os.access(out.parent, os.W_OK)):
            parser.error(f"cannot write {out}: {out.parent} is not a writable folder")
    try:
        expected = read_expected(args.expected_tsv)
        names = read_file_names(args.expected_tsv, args.names)
    except (ValueError, FileNotFoundError, OSError) as exc:
        parser.error(str(exc))
    if len(names) != len(expected):
        parser.error(f"{len(names)} document names but {len(expected)} expected lines")
    missing = [n for n in names if not (args.docs_dir / n).is_file()]
    if missing:
        parser.error(f"{len(missing)} listed documents are not in {args.docs_dir}, e.g. "
                     f"{missing[0]}")
    bad_env = [e for e in args.env if "=" not in e]
    if bad_env:
        parser.error(f"--env takes NAME=VALUE, not {bad_env[0]!r}")
    env = dict(e.split("=", 1) for e in args.env)
    env["DOC_RUNS_EXTRA_FIELDS"] = args.fields or json.dumps(KLEISTER_NDA_FIELDS)
    try:
        extra_field_specs(json.loads(env["DOC_RUNS_EXTRA_FIELDS"]))
    except ValueError as exc:  # JSON errors and FieldSpecInvalid alike
        parser.error(f"--fields: {exc}")
    with tempfile.TemporaryDirectory(prefix="doc-runs-quality-") as scratch:
        work = Path(scratch)
        os.chmod(work, 0o700)
        inputs = work / "documents"
        inputs.mkdir()
        for name in dict.fromkeys(names):
            (inputs / name).symlink_to((args.docs_dir / name).resolve())
        started = time.perf_counter()
        result = doc_runs_process(inputs, work / "project", env=env)
        elapsed = time.perf_counter() - started
        lines = [json.loads(line) for line in
                 (work / "project" / "process.jsonl").read_text().splitlines()]
        by_file = {Path(line["path"]).name: line.get("document_id") for line in lines}
        predicted = [predicted_pairs(work / "project" / "store", by_file.get(n),
                                     KLEISTER_NDA_KEYS) for n in names]
    scores = score(expected, predicted)
    print(f"{len(names)} documents, {elapsed:.0f} s, statuses {result['statuses']}")
    if not result["statuses"].get("succeeded"):
        print(f"no document succeeded ({result['statuses']}, reasons: {result['reasons']}): "
              f"nothing to score; check the --env settings. {result['stderr_tail']}",
              file=sys.stderr)
        return 1
    print(f"{'field':16} {'precision':>9} {'recall':>7} {'F1':>6}   right/predicted/expected")
    for key, s in scores.items():
        print(f"{key:16} {s.precision:9.3f} {s.recall:7.3f} {s.f1:6.3f}   "
              f"{s.true_positives}/{s.predicted}/{s.expected}")
    if args.out:
        args.out.write_text("".join(" ".join(f"{k}={v}" for k, v in sorted(p)) + "\n"
                                    for p in predicted), encoding="utf-8")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "documents": len(names), "seconds": round(elapsed, 1),
            "statuses": result["statuses"],
            "fields": {k: {"precision": s.precision, "recall": s.recall, "f1": s.f1,
                           "right": s.true_positives, "predicted": s.predicted,
                           "expected": s.expected} for k, s in scores.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
