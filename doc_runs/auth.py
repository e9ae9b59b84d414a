"""The one auth rule for principals and tenants, shared by HTTP, the queue and the workers.

A principal is a tenant. It proves who it is with an API token (only the token's SHA-256 is
kept) and signs queue envelopes with its HMAC key. A tenant sees only its own documents.
Nothing here ever puts a token or a key into an error message or a repr."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SECRETS_FILE_VARIABLE = "DOC_RUNS_SECRETS_FILE"
API_TOKENS_VARIABLE = "DOC_RUNS_API_TOKENS"
SIGNING_KEYS_VARIABLE = "DOC_RUNS_SIGNING_KEYS"

_TENANT_RE = re.compile(TENANT_PATTERN)
_SHA256_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


class SecretsError(ValueError):
    """Secrets configuration that cannot be used; the message names where, never the secret."""


class UnknownTenant(LookupError):
    """The tenant has no signing key."""


def valid_tenant(name: str) -> bool:
    # fullmatch: with re.match, "$" would also accept a trailing newline.
    return isinstance(name, str) and _TENANT_RE.fullmatch(name) is not None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def may_access(tenant: str, owner: str | None) -> bool:
    """A principal may see a document only when it owns it; no owner means no document."""
    return owner is not None and valid_tenant(tenant) and tenant == owner


@dataclass(frozen=True)
class TenantSecrets:
    token_sha256: tuple[str, ...] = ()
    signing_key: bytes | None = field(default=None, repr=False)


class Secrets:
    def __init__(self, tenants: Mapping[str, TenantSecrets] | None = None) -> None:
        tenants = dict(tenants or {})
        for name in tenants:
            if not valid_tenant(name):
                raise SecretsError("a tenant name does not match TENANT_PATTERN")
        self._tenants = tenants
        # One token naming two tenants would make the lookup ambiguous.
        digests = [d for secrets in tenants.values() for d in set(secrets.token_sha256)]
        if len(digests) != len(set(digests)):
            raise SecretsError("the same API token is configured for more than one tenant")
        self._digests = [(d.encode(), name) for name, s in tenants.items() for d in s.token_sha256]

    def __repr__(self) -> str:
        return f"Secrets(tenants={self.tenants()!r})"

    def tenants(self) -> list[str]:
        return sorted(self._tenants)

    def tenant_secrets(self, tenant: str) -> TenantSecrets | None:
        return self._tenants.get(tenant)

    def tenant_for_token(self, token: str) -> str | None:
        if not token:
            return None
        presented = token_sha256(token).encode()
        found: str | None = None
        # Every digest is compared, matched or not, so the time taken says nothing about
        # which tenant (or how many tokens before it) the token belongs to. Digests are
        # unique (checked in __init__), so at most one matches.
        for digest, tenant in self._digests:
            if hmac.compare_digest(presented, digest):
                found = tenant
        return found

    def sign(self, tenant: str, message: bytes) -> str:
        secrets = self._tenants.get(tenant)
        if secrets is None or secrets.signing_key is None:
            raise UnknownTenant(f"tenant {tenant!r} has no signing key")
        return hmac.new(secrets.signing_key, message, hashlib.sha256).hexdigest()

    def verify(self, tenant: str, message: bytes, signature: str) -> bool:
        if not isinstance(signature, str) or _SHA256_HEX_RE.fullmatch(signature) is None:
            return False
        try:
            expected = self.sign(tenant, message)
        except UnknownTenant:
            return False
        return hmac.compare_digest(expected.encode(), signature.encode())


# -- loading -------------------------------------------------------------------------------


def load_secrets(env: Mapping[str, str]) -> Secrets:
    """The file named by DOC_RUNS_SECRETS_FILE, then DOC_RUNS_API_TOKENS (tokens are added to
    the file's) and DOC_RUNS_SIGNING_KEYS (a key set here replaces the file's)."""
    tokens: dict[str, list[str]] = {}
    keys: dict[str, bytes] = {}
    secrets_file = env.get(SECRETS_FILE_VARIABLE, "").strip()
    if secrets_file:
        for name, secrets in _read_secrets_file(Path(secrets_file)).items():
            tokens.setdefault(name, []).extend(secrets.token_sha256)
            if secrets.signing_key is not None:
                keys[name] = secrets.signing_key
    for name, token in _env_pairs(env, API_TOKENS_VARIABLE):
        digest = token_sha256(token)
        if digest not in tokens.setdefault(name, []):
            tokens[name].append(digest)
    env_keys: set[str] = set()
    for name, key in _env_pairs(env, SIGNING_KEYS_VARIABLE):
        if name in env_keys:
            raise SecretsError(f"{SIGNING_KEYS_VARIABLE} names a tenant twice")
        env_keys.add(name)
        keys[name] = key.encode()
    return Secrets({
        name: TenantSecrets(tuple(tokens.get(name, ())), keys.get(name))
        for name in sorted(set(tokens) | set(keys))
    })


def environment_secrets_of(tenant: str, env: Mapping[str, str]) -> list[str]:
    """The environment variables that give `tenant` a token or a signing key beside the
    secrets file (a rotation of the file does not change those)."""
    found = []
    for variable in ("DOC_RUNS_API_TOKENS", "DOC_RUNS_SIGNING_KEYS"):
        try:
            if any(name == tenant for name, _ in _env_pairs(env, variable)):
                found.append(variable)
        except SecretsError:
            found.append(variable)  # malformed: it may well name the tenant
    return found


def _env_pairs(env: Mapping[str, str], variable: str) -> Iterator[tuple[str, str]]:
    """`tenant=value` entries separated by commas; the value may itself contain "="."""
    raw = env.get(variable, "")
    if not raw.strip():
        return
    for position, entry in enumerate(raw.split(","), start=1):
        # Entries are named by position only: a malformed one may be a secret.
        name, sep, value = entry.strip().partition("=")
        if not sep:
            raise SecretsError(f"{variable}: entry {position} is not of the form tenant=value")
        if not valid_tenant(name.strip()):
            raise SecretsError(
                f"{variable}: entry {position} has a tenant name that does not match "
                f"{TENANT_PATTERN}")
        if not value.strip():
            raise SecretsError(f"{variable}: entry {position} has an empty value")
        yield name.strip(), value.strip()


def _read_secrets_file(path: Path) -> dict[str, TenantSecrets]:
    def fail(what: str) -> SecretsError:
        return SecretsError(f"secrets file {path}: {what}")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("does not exist") from None
    except UnicodeDecodeError:
        raise fail("is not UTF-8 text") from None
    except OSError as exc:
        raise fail(f"cannot be read ({type(exc).__name__})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only; str(exc) is the same, but never the document.
        raise fail(f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(document, dict) or set(document) != {"tenants"}:
        raise fail('must be an object with exactly one key, "tenants"')
    tenants = document["tenants"]
    if not isinstance(tenants, dict):
        raise fail('"tenants" must be an object of tenant name to its secrets')
    result: dict[str, TenantSecrets] = {}
    for position, (name, entry) in enumerate(tenants.items(), start=1):
        if not valid_tenant(name):
            raise fail(f"tenant {position} has a name that does not match {TENANT_PATTERN}")
        result[name] = _tenant_entry(entry, f"secrets file {path}: tenants.{name}")
    return result


def _tenant_entry(entry: Any, where: str) -> TenantSecrets:
    def fail(what: str) -> SecretsError:
        return SecretsError(f"{where}: {what}")

    if not isinstance(entry, dict):
        raise fail("must be an object")
    unknown = set(entry) - {"token_sha256", "signing_key"}
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)} (allowed: token_sha256, signing_key)")
    digests = entry.get("token_sha256", [])
    if not isinstance(digests, list):
        raise fail("token_sha256 must be a list of SHA-256 hex digests")
    normalized: list[str] = []
    for position, digest in enumerate(digests, start=1):
        if not isinstance(digest, str) or not _SHA256_HEX_RE.fullmatch(digest.lower()):
            raise fail(f"token_sha256 item {position} is not a 64-character SHA-256 hex digest")
        if digest.lower() not in normalized:
            normalized.append(digest.lower())
    key = entry.get("signing_key")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise fail("signing_key must be a non-empty string")
    return TenantSecrets(tuple(normalized), key.encode() if key is not None else None)


# -- adding a tenant -----------------------------------------------------------------------


def add_tenant(secrets_file: Path, name: str) -> str:
    """Give `name` a fresh API token (and a signing key when it has none) in `secrets_file`;
    return the plain token, which is shown once and stored nowhere."""
    if not valid_tenant(name):
        raise SecretsError(f"tenant name does not match {TENANT_PATTERN}")
    secrets_file = Path(secrets_file)
    parent = secrets_file.parent
    if not parent.exists():
        parent.mkdir(parents=True)
        # mkdir's mode is filtered by the umask; the folder holds secrets, so say it outright.
        parent.chmod(0o700)
    with _locked(parent):
        tenants = _read_secrets_file(secrets_file) if secrets_file.exists() else {}
        token = token_urlsafe(32)
        current = tenants.get(name, TenantSecrets())
        key = current.signing_key or token_urlsafe(32).encode()
        tenants[name] = TenantSecrets((*current.token_sha256, token_sha256(token)), key)
        _write_secrets_file(secrets_file, tenants)
    return token


def rotate_tenant(secrets_file: Path, name: str, keep_tokens: bool = False) -> str:
    """Give an existing tenant a new signing key and a new API token, revoking its other
    tokens unless `keep_tokens`; return the plain token. Messages signed with the old key
    and not yet read are refused from then on (dead-lettered as bad_signature)."""
    secrets_file = Path(secrets_file)
    with _locked(secrets_file.parent):
        tenants = _read_secrets_file(secrets_file)
        if name not in tenants:
            raise SecretsError(f"no tenant {name!r} in {secrets_file}")
        token = token_urlsafe(32)
        kept = tenants[name].token_sha256 if keep_tokens else ()
        tenants[name] = TenantSecrets((*kept, token_sha256(token)),
                                      token_urlsafe(32).encode())
        _write_secrets_file(secrets_file, tenants)
    return token


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # Two operators adding tenants at once must not lose one of the updates.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write_secrets_file(path: Path, tenants: Mapping[str, TenantSecrets]) -> None:
    document: dict[str, Any] = {"tenants": {}}
    for name in sorted(tenants):
        secrets = tenants[name]
        entry: dict[str, Any] = {"token_sha256": list(secrets.token_sha256)}
        if secrets.signing_key is not None:
            entry["signing_key"] = secrets.signing_key.decode()
        document["tenants"][name] = entry
    # mkstemp creates the file 0600, so the secrets are never readable by others, not even
    # for a moment; the rename makes readers see the old file or the new one, never half.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
