"""Build bench/data/peps.jsonl: Python Enhancement Proposals as (text, human reference summary).

Each PEP's "Abstract" section, written by its authors, is the reference summary; the rest of the
body is the text to summarize (no header fields, no Abstract, no Copyright, References or
Footnotes sections; reStructuredText markup reduced to plain text, code blocks kept as indented
plain text). Only PEPs whose Copyright section is one of the public-domain / CC0 statements in
LICENCES are kept. See bench/data/README.md for the selection rule.

Reads the PEP sources from a git directory of https://github.com/python/peps (bare is fine):

    .venv/bin/python bench/data/prepare_peps.py /path/to/peps.git [--out bench/data/peps.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 100  # PEPs in the set, taken evenly spaced over the eligible ones by number
ABSTRACT_WORDS = (40, 250)
MIN_BODY_WORDS = 800

# The first paragraph of the Copyright section, whitespace collapsed, must be one of these.
LICENCES = [
    (
        re.compile(r"This (?:document|PEP) (?:has been|is) placed (?:in|into) the public domain\.",
                   re.I),
        "public domain",
    ),
    (re.compile(r"This document is in the public domain\.", re.I), "public domain"),
    (
        re.compile(
            r"This document is placed in the public domain or under the "
            r"CC0-1\.0-Universal license, whichever is more permissive\."
        ),
        "CC0-1.0",
    ),
    (
        re.compile(
            r"This document has been placed in the public domain under the terms of the "
            r"CC0 1\.0 license: https://creativecommons\.org/publicdomain/zero/1\.0/"
        ),
        "CC0-1.0",
    ),
]
DROPPED_SECTIONS = {"abstract", "copyright", "references", "footnotes"}
# Directives whose indented content is prose or code worth keeping; all others are dropped.
KEEP_CONTENT = {
    "note", "warning", "tip", "important", "attention", "caution", "danger", "error", "hint",
    "admonition", "seealso", "topic", "sidebar", "epigraph", "pull-quote", "container",
    "code", "code-block", "sourcecode", "parsed-literal", "list-table", "rubric",
}
LITERAL_DIRECTIVES = {"code", "code-block", "sourcecode", "parsed-literal"}
UNDERLINE = re.compile(r"^([=\-~^*+#\"'`:.])\1{2,}\s*$")
DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w-]+)::\s*(.*)$")


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True
    ).stdout


def split_header(source: str) -> tuple[dict[str, str], list[str]]:
    lines = source.splitlines()
    header: dict[str, str] = {}
    key = None
    i = 0
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        if line[:1].isspace() and key:
            header[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            header[key] = value.strip()
        i += 1
    return header, lines[i:]


def sections(lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """(level, title, body lines) for each section; level 0 is text before the first title."""
    levels: list[str] = []
    out: list[tuple[int, str, list[str]]] = [(0, "", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        overline = UNDERLINE.match(line) and i + 2 < len(lines) and UNDERLINE.match(lines[i + 2])
        if overline and lines[i + 1].strip():
            mark, title, i = "o" + line.strip()[0], lines[i + 1].strip(), i + 3
        elif (
            line.strip()
            and not line[0].isspace()
            and UNDERLINE.match(nxt)
            and len(nxt.strip()) >= len(line.strip())
        ):
            mark, title, i = nxt.strip()[0], line.strip(), i + 2
        else:
            out[-1][2].append(line)
            i += 1
            continue
        if mark not in levels:
            levels.append(mark)
        out.append((levels.index(mark) + 1, title, []))
    return out


def without(parts: list[tuple[int, str, list[str]]], names: set[str]):
    """Drop top-level sections (and their subsections) whose title is in names."""
    kept, dropping = [], None
    for level, title, body in parts:
        if dropping is not None and level > dropping:
            continue
        dropping = None
        if level == 1 and title.lower() in names:
            dropping = level
            continue
        kept.append((level, title, body))
    return kept


def section_body(parts, name: str) -> list[str] | None:
    for i, (level, title, body) in enumerate(parts):
        if level == 1 and title.lower() == name:
            out = list(body)
            for sub_level, sub_title, sub_body in parts[i + 1 :]:
                if sub_level <= level:
                    break
                out += ["", sub_title, "", *sub_body]
            return out
    return None


def inline(text: str) -> str:
    """Reduce reST inline markup to plain text."""
    text = re.sub(r":pep:`(\d+)(?:#[^`]*)?`", r"PEP \1", text)
    text = re.sub(r":rfc:`(\d+)(?:#[^`]*)?`", r"RFC \1", text)
    text = re.sub(r"``(.+?)``", r"\1", text, flags=re.S)
    text = re.sub(r"(?::[\w:+-]+:)?`([^`<]*?)\s*<[^`>]*>`(?::[\w:+-]+:)?_{0,2}", r"\1", text)
    text = re.sub(r":[\w:+-]+:`[~!]?([^`]*)`", r"\1", text)
    text = re.sub(r"`([^`]+)`_{1,2}", r"\1", text)  # [^`] spans lines
    text = re.sub(r"`([^`]+)`", r"\1", text)
    text = re.sub(r"\s?\[(?:#[\w-]*|\d+|[\w-]+)\]_", "", text)  # footnote references
    text = re.sub(r"(?<![\w_])([A-Za-z][\w-]*[A-Za-z0-9])__?(?!\w)", r"\1", text)
    text = re.sub(r"\*\*(\S(?:[^*]{0,300}?\S)?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^\s*](?:[^*]{0,300}?[^\s*])?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\|([\w -]+)\|(?:_{1,2})?", r"\1", text)
    return re.sub(r"\\([\\*`_|])", r"\1", text.replace("\\ ", ""))


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def plain(lines: list[str]) -> str:
    """reST body lines to plain text: prose unwrapped of markup, literal blocks kept verbatim."""
    out: list[tuple[bool, str]] = []  # (is prose, line)
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        match = DIRECTIVE.match(line)
        if match or stripped == ".." or (stripped.startswith(".. ") and "::" not in stripped):
            base = indent_of(line)
            name = match.group(2).lower() if match else ""
            argument = match.group(3).strip() if match else ""
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or indent_of(lines[i]) > base):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out.append((False, ""))
            if name not in KEEP_CONTENT:
                continue
            body = [b for b in block if not re.match(r"^\s*:[\w-]+:", b)]
            if name in LITERAL_DIRECTIVES:
                out += [(False, b.rstrip()) for b in body]
            else:
                if argument and name in {"admonition", "topic", "sidebar", "rubric"}:
                    out += [(False, inline(argument)), (False, "")]
                out.append((False, plain(dedent(body))))
            out.append((False, ""))
            continue
        if UNDERLINE.match(line) or re.match(r"^\s*[+|][-=+|: ]*[+|]\s*$", line) or (
            re.match(r"^\s*=+( +=+)+\s*$", line)
        ):
            i += 1  # table borders
            continue
        if stripped.endswith("::"):
            # Paragraph introducing a literal block: keep the block as it is.
            lead = stripped[:-2].rstrip()
            if lead:
                out.append((True, lead + ":"))
            # The block is indented past the paragraph's text (a list item's text included).
            marker = re.match(r"\s*(?:[-*+]|#\.|\(?\w{1,3}[.)])\s+", line)
            base = marker.end() if marker else indent_of(line)
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or indent_of(lines[i]) > base):
                block.append(lines[i].rstrip())
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += [(False, ""), *((False, b) for b in block), (False, "")]
            continue
        out.append((bool(stripped), stripped))
        i += 1
    # Inline markup can span lines within a paragraph, so reduce it paragraph by paragraph.
    pieces: list[str] = []
    prose: list[str] = []
    for is_prose, text in [*out, (False, "")]:
        if is_prose:
            prose.append(text)
            continue
        if prose:
            pieces.append(inline("\n".join(prose)))
            prose = []
        pieces.append(text)
    text = "\n".join(pieces)
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text).strip()


def dedent(block: list[str]) -> list[str]:
    depth = min((indent_of(b) for b in block if b.strip()), default=0)
    return [b[depth:] for b in block]


def render(parts) -> str:
    pieces = []
    for level, title, body in parts:
        if level:
            pieces.append(inline(title))
        text = plain(body)
        if text:
            pieces.append(text)
    return "\n\n".join(pieces)


def licence(parts) -> str | None:
    body = section_body(parts, "copyright")
    if body is None:
        return None
    paragraph = " ".join("\n".join(body).strip().split("\n\n")[0].split())
    paragraph = re.sub(r"`([^`<]*?)\s*<[^`>]*>`_{1,2}", r"\1", paragraph)
    for pattern, name in LICENCES:
        if pattern.fullmatch(paragraph):
            return name
    return None


def words(text: str) -> int:
    return len(text.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("git_dir", help="git directory of a python/peps clone (bare is fine)")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--out", type=Path, default=HERE / "peps.jsonl")
    args = parser.parse_args()

    commit = git(args.git_dir, "rev-parse", args.rev).strip()
    paths = [
        p for p in git(args.git_dir, "ls-tree", "-r", "--name-only", commit).splitlines()
        if re.fullmatch(r"peps/pep-\d{4}\.rst", p)
    ]
    eligible = []
    reasons: dict[str, int] = {}
    for path in sorted(paths):
        header, lines = split_header(git(args.git_dir, "show", f"{commit}:{path}"))
        parts = sections(lines)
        name = licence(parts)
        abstract = section_body(parts, "abstract")
        if name is None:
            reasons["copyright"] = reasons.get("copyright", 0) + 1
            continue
        if abstract is None:
            reasons["no Abstract"] = reasons.get("no Abstract", 0) + 1
            continue
        reference = " ".join(plain(abstract).split())
        text = render(without(parts, DROPPED_SECTIONS))
        if not ABSTRACT_WORDS[0] <= words(reference) <= ABSTRACT_WORDS[1]:
            reasons["abstract length"] = reasons.get("abstract length", 0) + 1
            continue
        if words(text) < MIN_BODY_WORDS:
            reasons["body too short"] = reasons.get("body too short", 0) + 1
            continue
        eligible.append({
            "pep": int(header["PEP"]),
            "title": header.get("Title", ""),
            "licence": name,
            "text": text,
            "reference": reference,
            "path": path,
        })
    step = len(eligible) / TARGET
    chosen = [eligible[int(i * step)] for i in range(min(TARGET, len(eligible)))]
    with args.out.open("w", encoding="utf-8") as f:
        for record in chosen:
            record.pop("path")
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"python/peps at {commit}: {len(paths)} PEP files, {len(eligible)} eligible, "
          f"{len(chosen)} written to {args.out} ({args.out.stat().st_size} bytes)")
    print("excluded:", reasons)


if __name__ == "__main__":
    main()
