"""Organizations and persons: legal-form suffixes ("Acme Corp."), defined terms
(`Acme Corp. (the "Company")`), the parties a preamble names ("by and between A and B"), and
signature blocks ("By: ... Name: Jane Roe"). Names come back without role words."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from doc_runs.core.fields.numbers import MAX_FOUND
from doc_runs.core.fields.places import KNOWN_PLACES

LEGAL_FORMS = (
    "Incorporated", "Inc", "Corporation", "Corp", "Company", "Co", "LLC", "L.L.C", "LLP",
    "L.L.P", "LLLP", "PLLC", "LP", "L.P", "Ltd", "Limited", "PLC", "plc", "AG", "KG", "SA",
    "S.A", "NV", "N.V", "BV", "B.V", "GmbH", "SE", "AB", "ASA", "A/S", "ApS", "Oy", "Oyj",
    "S.p.A", "SpA", "SRL", "S.r.l", "SARL", "S.A.R.L", "SAS", "S.A.S", "S.L", "K.K", "Pte",
    "Pvt", "Pty", "P.C", "N.A", "Bancorp", "Bancshares", "Trust", "Partners", "Holdings", "Group")
# Forms written with a full stop ("Inc."); after the others a full stop ends the sentence.
_DOTTED_FORMS = {"inc", "corp", "co", "ltd", "pty", "pte", "pvt", "jr", "sr", "st", "bros"}
# Capitals too: "ACME ROCKET COMPANY, INC." (matched case-sensitively: "co-operate" is not).
_FORM = "|".join(re.escape(f) for f in sorted(
    {*LEGAL_FORMS, *(f.upper() for f in LEGAL_FORMS)}, key=len, reverse=True))
_FORM_END = re.compile(rf"(?:,?\s+(?:{_FORM})\.?)+$")
# Entity descriptions that follow a party's name: ", a Delaware corporation".
_ENTITY = (r"(?:corporation|company|limited\s+liability\s+company|partnership|limited\s+"
           r"partnership|bank|trust|association|individual|corporate\s+body|entity|"
           r"business|banking\s+corporation|national\s+association|société|société anonyme)")
_AFTER_NAME = re.compile(
    rf"(?:,\s*|\s+)(?:an?|the)\s+(?:[\w.-]+\s+){{0,4}}?{_ENTITY}\b"  # , a Delaware corporation
    r"|\s*\(\s*(?:the\s+|each\s+a\s+|hereinafter\s+(?:referred\s+to\s+as\s+|called\s+)?"
    r"(?:the\s+)?)?[“\"'‘]"  # (the "Company")
    r"|,?\s+(?:residing|whose\s+address|with\s+(?:its|a)\s+principal|having\s+(?:its|a)\s+"
    r"(?:principal|place|registered))",
    re.IGNORECASE,
)
_BETWEEN = re.compile(r"\b(?:by\s+and\s+)?(?:between|among)\s+", re.IGNORECASE)
_CONNECTORS = {"and", "of", "the", "de", "du", "la", "von", "van", "der", "&", "for", "y"}
_ROLES = (r"(?:Title|Its|President|Chief\s+\w+\s+Officer|CEO|CFO|COO|Director|Secretary|"
          r"Treasurer|Chairman|Manager|Managing\s+Director|General\s+Counsel|Vice\s+President|"
          r"Executive|Employee|Officer|Member|Partner|Authorized\s+Signatory)")
# A role after a name: after a comma ("Jane Roe, President"), as a label ("Title: CEO"), or
# as the last words; inside a name it is part of it ("Bank of America Executive Services").
_ROLE_WORDS = re.compile(
    r"(?:,?\s+(?:M\.?D\.?|Ph\.?D\.?|Esq\.?|CPA|J\.?D\.?))+$"
    rf"|,\s*{_ROLES}\b.*$"
    r"|\s+(?:Title|Its|Name|Signature|By)\s*:.*$"
    rf"|\s+{_ROLES}$"
    r"|,?\s+(?:and\s+)?(?:its\s+)?(?:divisions|subsidiaries|affiliates|successors)\b.*$",
    re.IGNORECASE,
)
_NOT_NAME_STARTS = {"section", "article", "country", "state", "agreement", "during",
                    "confidential", "if", "each", "either"}
_NOT_NAME_ENDS = {"act", "committee", "designation", "merger", "plan", "designee", "agreement",
                  "date", "information", "party", "parties", "transaction", "purpose",
                  "recitals", "witnesseth", "section", "exhibit", "schedule"}
_FORMS_BY_CAPITALS = {f.upper(): f for f in LEGAL_FORMS if f.upper() != f or f.isupper()}
# Words of running text, not of names: a run of capitals can be a shouted sentence.
_FUNCTION_WORDS = {"i", "my", "me", "that", "with", "or", "if", "without", "is", "are", "not",
                   "at", "you", "your", "we", "our", "this", "which", "unless", "upon", "any",
                   "all", "may", "shall", "will", "be", "to", "in", "on", "as", "by", "from",
                   "hereby", "herein", "such", "no", "it", "its", "page", "whereas", "recitals",
                   "board", "undersigned", "buyer", "seller", "purchaser", "employer", "logo"}
_PLACE_NAMES = {p.lower() for p in KNOWN_PLACES} | {"virgin islands", "british virgin islands"}
_ENTITY_WORDS = {f.lower().rstrip(".") for f in LEGAL_FORMS} | {
    "limited", "partnership", "liability", "corporation", "company", "a", "an"}
_DESCRIPTIVE_TAIL = re.compile(r"(?:,?\s*(?:and\s+)?(?:its\s+)?(?:divisions|subsidiaries|"
                               r"affiliates|successors|assigns)\b)+\.?\s*$"
                               r"|(?:,?\s*(?:M\.D\.|Ph\.D\.|Esq\.))+\s*$", re.IGNORECASE)
_TOKEN = re.compile(r"[\w'’.&¢@-]+|,|\S")
# A signature block's name: after "Name:", "By:" or "/s/", up to the end of its line or of
# its column (two or more spaces: a two-column signature page).
_SIGNER = re.compile(r"(?:\b(?:Name|By)\s*:|/s/)[ \t]*(?:/s/[ \t]*)?"
                     r"(?P<name>[^\W\d_][\w.'’-]*(?:[ \t]?[ \t]?[\w.'’-]+){0,4}?)"
                     r"(?=[ \t]{2,}|[ \t]*$)", re.MULTILINE | re.IGNORECASE)
_SUFFIXES = {"jr", "sr", "ii", "iii", "iv"}
_STOP_NAMES = {"agreement", "the agreement", "company", "the company", "party", "parties",
               "recipient", "discloser", "disclosing party", "receiving party", "employee",
               "executive", "confidential information", "effective date", "date", "witness",
               "whereas", "now therefore", "by", "name", "title", "signature", "exhibit"}


@dataclass(frozen=True)
class FoundName:
    start: int
    end: int
    text: str
    name: str
    kind: str  # "organization" or "person"
    weight: float


def _is_name_word(token: str) -> bool:
    return bool(token) and (token[0].isupper() or token[0].isdigit() or token == "&"
                            or token.startswith("¢"))


def _name_before(text: str, end: int, limit: int = 12) -> tuple[int, str] | None:
    """The run of name words ending at `end`, walking back over capitalized words, legal
    forms and the connectors inside names ("Leonard Green & Partners, L.P.")."""
    tail = _DESCRIPTIVE_TAIL.search(text, max(0, end - 120), end)
    if tail:
        end = tail.start()
    window_start = max(0, end - 200)
    tokens = list(_TOKEN.finditer(text, window_start, end))
    taken: list[re.Match[str]] = []
    for token in reversed(tokens):
        word = token.group()
        if word == ",":
            # A comma belongs to a name only before its legal form ("Kite Pharma, Inc.").
            if taken and _FORM_END.search(", " + taken[-1].group()):
                taken.append(token)
                continue
            break
        if word.endswith(".") and taken and not re.fullmatch(
                rf"(?:[A-Z]|{_FORM}|Jr|Sr|St|Mr|Mrs|Ms|Dr|No)\.", word):
            break  # a sentence's full stop: the name starts after it
        if taken and taken[-1].group().lower() in ("and", "&") and re.fullmatch(
                rf"(?:{_FORM})\.?", word):
            break  # "Alpha Corp and Beta Ltd": two names, not one
        if _is_name_word(word) or (word.lower() in _CONNECTORS and taken):
            taken.append(token)
            if len(taken) >= limit:
                break
            continue
        break
    while taken and (taken[-1].group().lower() in _CONNECTORS or taken[-1].group() == ","):
        taken.pop()
    if not taken:
        return None
    start = taken[-1].start()
    first_line, _, rest = text[start:end].partition("\n")
    if rest.strip() and first_line.isupper() and not rest.isupper():
        start += len(first_line) + 1  # a heading or a logo's place-holder above the name
    return start, text[start:end]


def clean_name(text: str, strict: bool = True) -> str | None:
    """Collapse spaces, drop quotes, role words and entity descriptions; title-case a name
    written in capitals (legal forms keep their usual spelling). `strict` (the offline
    readers) also turns away what is unlikely to be a name as written in full: one word, a
    heading, a shouted sentence, a place."""
    name = " ".join(text.replace("\u00a0", " ").split())
    # A defined term after the name: Acme Corp. (the "Company").
    name = re.sub(r"\s*\((?:the\s+|hereinafter\s+)?[\"“‘'][^)]*\)\s*$", "", name)
    name = name.strip(" ,;:()\"“”‘’'")
    name = re.sub(r"^/s/\s*", "", name)
    name = re.sub(r"['’]s$", "", name)
    last = name.rsplit(" ", 1)[-1].rstrip(".")
    if name.endswith(".") and not (len(last) == 1 or "." in last
                                   or last.lower() in _DOTTED_FORMS):
        name = name[:-1]  # a sentence's full stop, not an abbreviation's
    name = re.sub(r"^(?:(?:the|and|between|among|by|with)\s+)+", "", name, flags=re.IGNORECASE)
    previous = None
    while previous != name:
        previous = name
        name = _ROLE_WORDS.sub("", name).strip(" ,;:")
        name = re.sub(r",\s*(?:an?|the)\s+[\w .-]*$", "", name).strip(" ,;:")
    if not name or not any(c.isalpha() for c in name) or len(name) > 200:
        return None
    if name.isupper() and len(name) > 3:
        organization = bool(_FORM_END.search(name))
        name = " ".join(_title_word(w, organization) for w in name.split())
    if not strict:
        return name
    if name.lower() in _STOP_NAMES:
        return None
    if len(name) > 100 or re.search(r"(?<![\w¢])\d{3,}\b", name):
        return None  # a sentence or an address, not a name
    words = name.replace(",", " ").split()
    if words[-1].lower() in _NOT_NAME_ENDS or words[0].lower() in _NOT_NAME_STARTS or all(
            w.rstrip(".").lower() in _ENTITY_WORDS for w in words):
        return None
    if not all(_is_name_word(w) or w.lower() in _CONNECTORS for w in words):
        return None
    if any(w.lower().strip(".") in _FUNCTION_WORDS for w in words) or re.search(
            r"[a-z]{2}\.\s", name) or re.match(r"(?i)exhibit\b", name):
        return None
    if len(words) > 7 and not _FORM_END.search(name):
        return None
    if len(words) == 1 and not _FORM_END.search(name):
        return None  # a defined term or a heading, not a name as written in full
    bare = " ".join(w for w in words if w.rstrip(".").lower() not in _ENTITY_WORDS)
    if bare.lower() in _PLACE_NAMES:
        return None  # "Delaware corporation", "Norway": where a party is, not who
    return name


def _title_word(word: str, organization: bool) -> str:
    core = word.rstrip(".,")
    form = _FORMS_BY_CAPITALS.get(core.upper())
    if form is None and organization and len(core) <= 3 and core.isalpha() and (
            core.lower() not in (*_CONNECTORS, *_SUFFIXES)):
        form = core  # an acronym in a company's name: ABC LLC
    return (form or core.title()) + word[len(core):]


def _person_word(word: str) -> bool:
    core = word.rstrip(",")
    if re.fullmatch(r"[^\W\d_]\.", core):
        return True  # an initial
    return core.lower().rstrip(".") in _SUFFIXES or (
        core[:1].isupper() and core.replace("-", "").replace("'", "").replace("’", "")
        .isalpha() and not core.isupper())


def name_kind(name: str) -> str:
    words = name.split()
    person = (2 <= len(words) <= 5 and not _FORM_END.search(name)
              and all(_person_word(w) for w in words))
    return "person" if person else "organization"


def _found(text: str, start: int, end: int, weight: float) -> FoundName | None:
    name = clean_name(text[start:end])
    if name is None:
        return None
    return FoundName(start, end, " ".join(text[start:end].split()), name, name_kind(name),
                     weight)


def find_defined_parties(text: str) -> list[FoundName]:
    """Names followed by what introduces a party: an entity description or a defined term."""
    found = []
    for match in _AFTER_NAME.finditer(text):
        before = _name_before(text, match.start())
        if before is None:
            continue
        name = _found(text, before[0], before[0] + len(before[1]), 3.0)
        if name is not None:
            found.append(name)
    for match in _BETWEEN.finditer(text):
        # "between A and B": the first " and " before a capital splits the two names.
        tail = text[match.end():match.end() + 400]
        tail = re.split(r"(?<=[a-z]{2}\.)\s|[;:]\s|\n\s*\n|[(“\"]", tail, maxsplit=1)[0]
        for split in re.finditer(r",?\s+and\s+(?=[A-Z0-9])", tail):
            first = tail[:split.start()]
            second = re.split(r",\s*(?:an?|the|each|who|which|with|having)\s", tail[split.end():],
                              maxsplit=1)[0]
            names = [_found(text, match.end(), match.end() + len(first), 2.0),
                     _found(text, match.end() + split.end(),
                            match.end() + split.end() + len(second), 2.0)]
            if all(n is not None and len(n.name.split()) <= 8 for n in names):
                found.extend(n for n in names if n is not None)
                break
    return found


def find_organizations(text: str) -> list[FoundName]:
    """Every run of name words ending in a legal form."""
    found = []
    for match in re.finditer(rf"(?:,?\s+(?:{_FORM})\b\.?)+", text):
        before = _name_before(text, match.start())
        if before is None:
            continue
        name = _found(text, before[0], match.end(), 1.0)
        if name is not None and name.kind == "organization" and len(name.name.split()) > 1:
            found.append(name)
    return found


def find_signatories(text: str) -> list[FoundName]:
    """Persons who sign: "Name: Jane Roe", "By: /s/ Jane Roe", "/s/ Jane Roe", also side by
    side on a two-column signature page. One signing with a title under the name is an
    officer (weight 0.5), without one a party in person (2.5)."""
    found = []
    for match in itertools.islice(_SIGNER.finditer(text), MAX_FOUND):
        officer = re.search(r"(?im)^[ \t]*(?:title|its)\s*:", text[match.end():match.end() + 160])
        name = _found(text, match.start("name"), match.end("name"), 0.5 if officer else 2.5)
        if name is not None and name.kind == "person":
            found.append(name)
    return found
