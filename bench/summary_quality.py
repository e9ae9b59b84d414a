"""Summary quality: doc_runs' extractive summarizer against lead-3, lead-N and sumy's TextRank,
scored with ROUGE-1/2/L F1 (rouge-score, Porter stemming) against the human-written Abstracts
of the PEPs in bench/data/peps.jsonl (see bench/data/README.md), side by side in one run.

Length rule, the same for every method: a summary is whole sentences of the input, at most
--words words in total (words = whitespace-separated tokens). Each method orders the sentences
by its own preference and takes them in that order, skipping any sentence that would overrun
the budget; the summary is then read in document order. All methods see the same sentences:
doc_runs' own sentence splitter (`PagedText.sentence_spans()`).

  lead-3    the first three sentences (that fit the budget)
  lead-N    leading sentences while they fit: the budget filled from the top
  textrank  sumy's TextRankSummarizer (English snowball stemmer and stop words from sumy),
            sentences in order of its rating. sumy's own Tokenizer needs NLTK's punkt data,
            which is not downloadable offline, so sumy is given a document built from our
            sentence spans and a word tokenizer equivalent to its Tokenizer's word filter.
  doc_runs  doc_runs.core.summarize.extractive_summary with SummaryConfig(max_words=--words)

The PEPs with even numbers were used to choose the summarizer's settings; the odd ones are held
out and reported separately. Margins are doc_runs minus each baseline, mean over documents,
with a 95% paired bootstrap interval.

    .venv/bin/python bench/summary_quality.py [--words 100] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_runs.core.chunking import ChunkingConfig, PagedText, chunk_text  # noqa: E402
from doc_runs.core.summarize import SummaryConfig, extractive_summary  # noqa: E402

DATA = ROOT / "bench" / "data" / "peps.jsonl"
METHODS = ["lead-3", "lead-N", "textrank", "doc_runs"]
METRICS = ["rouge1", "rouge2", "rougeL"]
_SUMY_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['-])*")  # the words sumy's Tokenizer keeps


class _SumyWords:
    """Stands in for sumy's Tokenizer("english") where only words are asked for."""

    language = "english"

    def to_words(self, sentence: str) -> tuple[str, ...]:
        return tuple(_SUMY_WORD.findall(sentence))


def pack(order: list[int], lengths: list[int], budget: int, most: int | None = None) -> list[int]:
    """The length rule: sentences in preference order, skipping those that would overrun."""
    chosen: list[int] = []
    used = 0
    for i in order:
        if most is not None and len(chosen) >= most:
            break
        if used + lengths[i] <= budget:
            chosen.append(i)
            used += lengths[i]
    return sorted(chosen)


def textrank_order(sentences: list[str]) -> list[int]:
    from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
    from sumy.nlp.stemmers import Stemmer
    from sumy.summarizers.text_rank import TextRankSummarizer
    from sumy.utils import get_stop_words

    words = _SumyWords()
    document = ObjectDocumentModel([Paragraph([Sentence(s, words) for s in sentences])])
    summarizer = TextRankSummarizer(Stemmer("english"))
    summarizer.stop_words = get_stop_words("english")
    ratings = summarizer.rate_sentences(document)
    # sumy keys ratings by sentence text; its summarizer breaks ties by document order.
    rating = [ratings[s] for s in document.sentences]
    return sorted(range(len(sentences)), key=lambda i: (-rating[i], i))


def summarize_one(job: tuple[dict, int]) -> dict:
    from rouge_score import rouge_scorer

    record, budget = job
    paged = PagedText([(1, record["text"])])
    chunks = chunk_text(f"pep-{record['pep']}", paged, ChunkingConfig())
    spans = paged.sentence_spans()
    sentences = [" ".join(paged.text[s:e].split()) for s, e in spans]
    lengths = [len(s.split()) for s in sentences]
    in_order = list(range(len(sentences)))
    outputs: dict[str, str] = {}
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    outputs["lead-3"] = " ".join(sentences[i] for i in pack(in_order, lengths, budget, most=3))
    outputs["lead-N"] = " ".join(sentences[i] for i in pack(in_order, lengths, budget))
    seconds["lead"] = time.perf_counter() - started

    started = time.perf_counter()
    order = textrank_order(sentences)
    outputs["textrank"] = " ".join(sentences[i] for i in pack(order, lengths, budget))
    seconds["textrank"] = time.perf_counter() - started

    started = time.perf_counter()
    config = SummaryConfig(max_words=budget, max_sentences=1000, max_chars=1_000_000)
    summary = extractive_summary(paged, chunks, config)
    seconds["doc_runs"] = time.perf_counter() - started
    outputs["doc_runs"] = summary.text
    # The same rule holds for doc_runs: whole sentences of the input, within the budget, cited.
    assert {s.text for s in summary.sentences} <= set(sentences)
    by_id = {c.id: c for c in chunks}
    for s in summary.sentences:
        assert by_id[s.chunk_id].start <= s.start < by_id[s.chunk_id].end

    scorer = rouge_scorer.RougeScorer(METRICS, use_stemmer=True)
    scores = {}
    for method, text in outputs.items():
        assert len(text.split()) <= budget, (record["pep"], method)
        result = scorer.score(record["reference"], text)
        scores[method] = [result[m].fmeasure for m in METRICS]
    return {
        "pep": record["pep"],
        "scores": scores,
        "words": {m: len(t.split()) for m, t in outputs.items()},
        "seconds": seconds,
    }


def bootstrap(differences: np.ndarray, rounds: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(differences), size=(rounds, len(differences)))
    means = differences[picks].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(name: str, results: list[dict], budget: int) -> None:
    print(f"\n{name}: {len(results)} documents, length rule: whole sentences, "
          f"at most {budget} words per summary")
    print(f"{'method':<10} {'ROUGE-1 F1':>11} {'ROUGE-2 F1':>11} {'ROUGE-L F1':>11} "
          f"{'mean words':>11}")
    table = {m: np.array([r["scores"][m] for r in results]) for m in METHODS}
    for method in METHODS:
        means = table[method].mean(axis=0)
        words = np.mean([r["words"][method] for r in results])
        print(f"{method:<10} {means[0]:>11.4f} {means[1]:>11.4f} {means[2]:>11.4f} "
              f"{words:>11.1f}")
    print("margin of doc_runs (mean difference [95% paired bootstrap interval]; wins/losses):")
    for baseline in METHODS[:-1]:
        cells = []
        for k, metric in enumerate(METRICS):
            diff = table["doc_runs"][:, k] - table[baseline][:, k]
            low, high = bootstrap(diff)
            wins, losses = int((diff > 1e-12).sum()), int((diff < -1e-12).sum())
            cells.append(f"{metric} {diff.mean():+.4f} [{low:+.4f},{high:+.4f}] {wins}/{losses}")
        print(f"  vs {baseline:<9} " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--words", type=int, default=100, help="word budget per summary")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = parser.parse_args()

    records = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()
    jobs = [(r, args.words) for r in records]
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            results = pool.map(summarize_one, jobs, chunksize=1)
    else:
        results = [summarize_one(job) for job in jobs]
    elapsed = time.perf_counter() - started

    report("All PEPs", results, args.words)
    report("Held out: odd PEP numbers", [r for r in results if r["pep"] % 2], args.words)
    report("Tuning: even PEP numbers", [r for r in results if r["pep"] % 2 == 0], args.words)
    spent = {k: sum(r["seconds"][k] for r in results) for k in results[0]["seconds"]}
    print(f"\n{elapsed:.1f} s wall with {args.jobs} processes; CPU seconds by method: "
          + ", ".join(f"{k} {v:.1f}" for k, v in spent.items()))


if __name__ == "__main__":
    main()
