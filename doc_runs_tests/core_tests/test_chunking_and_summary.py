import itertools

from doc_runs.core.chunking import ChunkingConfig, PagedText, chunk_text
from doc_runs.core.sentences import sentence_spans
from doc_runs.core.summarize import SummaryConfig, extractive_summary, looks_like_code

DOC = "d" * 64


def paged_sample() -> PagedText:
    page1 = " ".join(f"Sentence {i} talks about invoices and payment terms." for i in range(30))
    page2 = " ".join(f"Clause {i} covers liability and warranty limits." for i in range(30))
    return PagedText([(1, page1), (2, page2)])


def test_sentences_respect_abbreviations_and_cjk() -> None:
    text = "Dr. Smith met Mr. J. Doe on Jan. 5. They signed. 第一句。第二句。"
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Dr. Smith met Mr. J. Doe on Jan. 5.", "They signed.", "第一句。", "第二句。",
    ]


def test_chunks_carry_exact_offsets_pages_and_stable_ids() -> None:
    paged = paged_sample()
    config = ChunkingConfig(chunk_size=400, chunk_overlap=120)
    chunks = chunk_text(DOC, paged, config)
    assert len(chunks) > 4
    for chunk in chunks:
        assert paged.text[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text) <= 400
        assert chunk.text[-1] == "."  # ends on a sentence boundary
    assert chunks[0].pages == [1] and chunks[-1].pages == [2]
    assert any(c.pages == [1, 2] for c in chunks) or any(
        c.pages == [2] and c.start == paged.starts[1] for c in chunks
    )
    # Overlap: each chunk starts before the previous one ended, and the text moves forward.
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start < before.end
    assert [c.id for c in chunk_text(DOC, paged, config)] == [c.id for c in chunks]
    assert len({c.id for c in chunks}) == len(chunks)


def test_sentence_longer_than_a_chunk_is_cut_not_lost() -> None:
    long = "word " * 500
    paged = PagedText([(1, long.strip() + ".")])
    chunks = chunk_text(DOC, paged, ChunkingConfig(chunk_size=300, chunk_overlap=0))
    assert all(len(c.text) <= 300 for c in chunks)
    assert sum(len(c.text.split()) for c in chunks) == 500


def test_overlap_must_be_below_size() -> None:
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        ChunkingConfig(chunk_size=100, chunk_overlap=100)


def test_summary_is_deterministic_bounded_and_cites_existing_chunks() -> None:
    paged = PagedText([(1, (
        "The merger agreement between Alpha Corp and Beta Ltd was signed on 3 March. "
        "The weather was pleasant that day. "
        "Alpha Corp will pay Beta Ltd shareholders 40 dollars per share under the merger. "
        "Lunch was served at noon. "
        "The merger requires approval by Beta Ltd shareholders and regulators. "
        "Closing of the merger is expected in the fourth quarter."
    ))])
    chunks = chunk_text(DOC, paged, ChunkingConfig(chunk_size=200, chunk_overlap=50))
    config = SummaryConfig(max_sentences=3, max_chars=400)
    summary = extractive_summary(paged, chunks, config)
    assert summary == extractive_summary(paged, chunks, config)
    assert 1 <= len(summary.sentences) <= 3 and len(summary.text) <= 400
    assert "merger" in summary.text and "Lunch" not in summary.text
    ids = {c.id for c in chunks}
    for sentence in summary.sentences:
        assert sentence.chunk_id in ids
        chunk = next(c for c in chunks if c.id == sentence.chunk_id)
        assert chunk.start <= sentence.start < chunk.end


def test_summary_keeps_a_word_budget_and_leaves_out_code_and_headings() -> None:
    paged = PagedText([(1, (
        "Lazy imports\n\n"
        "This proposal makes module imports lazy so that programs start faster. "
        "A lazy import binds a proxy object and loads the module on first use of the name. "
        "Programs that import many modules but use few of them start much faster.\n\n"
        "Example of a lazy import in a program module\n\n"
        "    lazy import json\n"
        "    print(json.dumps({'lazy': True}))  # the module loads here\n\n"
        "Errors raised while loading a lazy module are reported at first use of the module. "
        "Tools that inspect modules see the proxy until the module is loaded."
    ))])
    chunks = chunk_text(DOC, paged, ChunkingConfig(chunk_size=200, chunk_overlap=50))
    config = SummaryConfig(max_words=40, max_sentences=10, max_chars=5000)
    summary = extractive_summary(paged, chunks, config)
    assert summary == extractive_summary(paged, chunks, config)
    assert summary.sentences and len(summary.text.split()) <= 40
    assert "print(" not in summary.text and "Example of" not in summary.text
    assert summary.sentences[0].text.startswith("This proposal makes module imports lazy")
    ids = {c.id for c in chunks}
    assert all(s.chunk_id in ids for s in summary.sentences)
    assert looks_like_code("lazy import json\n    print(json.dumps({'lazy': True}))")
    assert looks_like_code("x = {'a': [1, 2]}; y = f(x)")
    assert not looks_like_code("A lazy import binds a proxy object (a stand-in) to the name.")


def test_summary_of_text_with_no_usable_sentence_is_cut_to_the_budget() -> None:
    paged = PagedText([(1, "word " * 300)])
    chunks = chunk_text(DOC, paged, ChunkingConfig())
    summary = extractive_summary(paged, chunks, SummaryConfig(max_words=20))
    assert len(summary.sentences) == 1 and len(summary.text.split()) == 20
