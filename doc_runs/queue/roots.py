"""The folders a queue message may name a file in (DOC_RUNS_ALLOWED_ROOTS), each declared for
the tenants that may use it or explicitly shared: a root is never everybody's by omission.

    {"contracts": {"path": "/srv/acme-contracts", "tenants": ["acme"]},
     "public": {"path": "/srv/public", "shared": true}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORM = ('{"NAME": {"path": "/folder", "tenants": ["TENANT", ...]}} or '
        '{"NAME": {"path": "/folder", "shared": true}}')


@dataclass(frozen=True)
class AllowedRoot:
    path: str
    tenants: frozenset[str] | None  # None: shared by every tenant, said so explicitly

    def may_use(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants


def parse_allowed_roots(value: Mapping[str, Any]) -> dict[str, AllowedRoot]:
    """The roots of DOC_RUNS_ALLOWED_ROOTS's JSON object, or ValueError saying what is wrong
    with which root and what the form is."""
    from doc_runs.auth import valid_tenant

    roots: dict[str, AllowedRoot] = {}
    for name, spec in value.items():
        if isinstance(spec, str):
            raise ValueError(f"root {name!r} names a folder but not who may use it (a root "
                             f"shared by every tenant is said so): {FORM}")
        if not isinstance(spec, dict) or not set(spec) <= {"path", "tenants", "shared"}:
            raise ValueError(f"root {name!r}: expected {FORM}")
        path = spec.get("path")
        if not isinstance(path, str) or not path.strip():
            raise ValueError(f"root {name!r}: expected a folder as its \"path\"")
        tenants, shared = spec.get("tenants"), spec.get("shared", False)
        if shared is True and tenants is None:
            roots[name] = AllowedRoot(path, None)
            continue
        if shared is not False or tenants is None:
            raise ValueError(f"root {name!r}: either \"tenants\" or \"shared\": true: {FORM}")
        if (not isinstance(tenants, list) or not tenants
                or not all(isinstance(t, str) and valid_tenant(t) for t in tenants)):
            raise ValueError(f"root {name!r}: expected \"tenants\" to be a list of tenant "
                             "names (letters, digits, '-', '_')")
        roots[name] = AllowedRoot(path, frozenset(tenants))
    return roots
