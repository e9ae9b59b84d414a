"""The GraphQL queries the Dagster UI's asset pages send, read from the installed webserver's
own source map (so they are exactly this release's queries, fragments resolved): what the
upgrade test and bench/scale.py ask the way an operator's browser would."""

from __future__ import annotations

import functools
import glob
import json
import os
import re
from typing import Any

import dagster_webserver

# An asset's page: its definition and latest materialization, the partitions bar, the latest
# partitions, the events list (the newest 100, as the Events tab asks), its checks and their
# partitions; and the catalog's table.
ASSET_PAGE_QUERIES = (
    "AssetViewDefinitionQuery", "PartitionHealthQuery", "LatestAssetPartitionsQuery",
    "RecentAssetEventsQuery", "AssetChecksQuery", "AssetCheckPartitionHealthQuery",
    "AssetCatalogTableQuery",
)
_GQL = re.compile(r"(?:export )?const (\w+)\s*=\s*gql`(.*?)`;", re.S)
_FRAGMENT = re.compile(r"\s*fragment (\w+) on ")


@functools.cache
def _templates() -> dict[str, str]:
    root = os.path.join(os.path.dirname(dagster_webserver.__file__), "webapp", "build")
    found: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(root, "_next", "static", "chunks", "*.js.map"))):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        for content in data.get("sourcesContent") or []:
            if content and "gql`" in content:
                for match in _GQL.finditer(content):
                    found.setdefault(match.group(1), match.group(2))
    if not found:
        raise RuntimeError(f"no GraphQL queries found in the webserver's build under {root}")
    return found


def ui_queries(names: tuple[str, ...] = ASSET_PAGE_QUERIES) -> dict[str, str]:
    """Each named operation's query text with every fragment it uses."""
    templates = _templates()
    by_operation = {}
    for const, text in templates.items():
        operation = re.search(r"\bquery (\w+)", text)
        if operation:
            by_operation.setdefault(operation.group(1), const)

    def expand(text: str, seen: set[str], fragments: list[str]) -> str:
        def include(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in seen and name in templates:
                seen.add(name)
                fragments.append(expand(templates[name], seen, fragments))
            return ""
        return re.sub(r"\$\{(\w+)\}", include, text)

    out = {}
    for name in names:
        if name not in by_operation:
            raise KeyError(f"the webserver's UI has no query {name}")
        fragments: list[str] = []
        body = expand(templates[by_operation[name]], set(), fragments)
        defined: dict[str, str] = {}
        for text in fragments:
            for part in re.split(r"(?=\bfragment \w+ on )", text):
                fragment = _FRAGMENT.match(part)
                if fragment:
                    defined.setdefault(fragment.group(1), part)
        out[name] = body + "\n".join(defined.values())
    return out


def asset_page_variables(asset: str, check: str = "document_succeeded") -> dict[str, Any]:
    return {"assetKey": {"path": [asset]}, "limit": 100, "checkName": check,
            "eventTypeSelectors": ["MATERIALIZATION", "FAILED_TO_MATERIALIZE", "OBSERVATION"]}
