from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest

from doc_runs.auth import (
    Secrets,
    SecretsError,
    UnknownTenant,
    add_tenant,
    load_secrets,
    may_access,
    valid_tenant,
)

SECRET = "S3cret-Never-In-Messages"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def test_tenant_names() -> None:
    assert valid_tenant("acme")
    assert valid_tenant("a1_b-c")
    assert valid_tenant("a" * 63)
    assert not valid_tenant("a" * 64)
    assert not valid_tenant("Acme")
    assert not valid_tenant("-acme")
    assert not valid_tenant("")
    assert not valid_tenant("acme\n")
    assert not valid_tenant("acme:beta")


def test_secrets_from_file_and_environment_are_merged(tmp_path: Path) -> None:
    secrets_file = _write(tmp_path / "secrets.json", {"tenants": {
        "acme": {"token_sha256": [_sha("file-token").upper()], "signing_key": "file-key"},
        "gamma": {"signing_key": "gamma-key"},
    }})
    secrets = load_secrets({
        "DOC_RUNS_SECRETS_FILE": str(secrets_file),
        "DOC_RUNS_API_TOKENS": "acme=env-token, beta=beta-token",
        "DOC_RUNS_SIGNING_KEYS": "beta=beta-key==",
    })
    assert secrets.tenants() == ["acme", "beta", "gamma"]
    assert secrets.tenant_for_token("file-token") == "acme"
    assert secrets.tenant_for_token("env-token") == "acme"
    assert secrets.tenant_for_token("beta-token") == "beta"
    expected = hmac.new(b"file-key", b"message", hashlib.sha256).hexdigest()
    assert secrets.sign("acme", b"message") == expected
    # "=" inside a value belongs to the value.
    beta = hmac.new(b"beta-key==", b"message", hashlib.sha256).hexdigest()
    assert secrets.sign("beta", b"message") == beta
    assert secrets.tenant_for_token("gamma-key") is None


def test_an_environment_signing_key_replaces_the_files(tmp_path: Path) -> None:
    secrets_file = _write(tmp_path / "secrets.json",
                          {"tenants": {"acme": {"signing_key": "old"}}})
    secrets = load_secrets({"DOC_RUNS_SECRETS_FILE": str(secrets_file),
                            "DOC_RUNS_SIGNING_KEYS": "acme=new"})
    assert secrets.verify("acme", b"m", hmac.new(b"new", b"m", hashlib.sha256).hexdigest())
    assert not secrets.verify("acme", b"m", hmac.new(b"old", b"m", hashlib.sha256).hexdigest())


def test_nothing_configured_is_no_tenants() -> None:
    assert load_secrets({}).tenants() == []
    assert load_secrets({"DOC_RUNS_API_TOKENS": "  "}).tenants() == []


@pytest.mark.parametrize(("content", "complaint"), [
    (f'{{"tenants": {{"acme": {{"signing_key": "{SECRET}"', "is not JSON"),
    (f'["{SECRET}"]', 'exactly one key, "tenants"'),
    ({"tenant": {"acme": {"signing_key": SECRET}}}, 'exactly one key, "tenants"'),
    ({"tenants": [SECRET]}, '"tenants" must be an object'),
    ({"tenants": {"Not A Tenant": {"signing_key": SECRET}}}, "does not match"),
    ({"tenants": {"acme": SECRET}}, "tenants.acme: must be an object"),
    ({"tenants": {"acme": {"signing_key": ""}}}, "signing_key must be a non-empty string"),
    ({"tenants": {"acme": {"signing_key": 42}}}, "signing_key must be a non-empty string"),
    ({"tenants": {"acme": {"token_sha256": SECRET}}}, "token_sha256 must be a list"),
    ({"tenants": {"acme": {"token_sha256": [SECRET]}}}, "token_sha256 item 1 is not"),
    ({"tenants": {"acme": {"token": SECRET}}}, "unknown keys ['token']"),
    ({"tenants": {"acme": {"token_sha256": [_sha("t")]},
                  "beta": {"token_sha256": [_sha("t")]}}}, "more than one tenant"),
])
def test_a_malformed_secrets_file_is_a_clear_error(tmp_path: Path, content: object,
                                                   complaint: str) -> None:
    secrets_file = _write(tmp_path / "secrets.json", content)
    with pytest.raises(SecretsError) as caught:
        load_secrets({"DOC_RUNS_SECRETS_FILE": str(secrets_file)})
    message = str(caught.value)
    assert complaint in message
    if "more than one tenant" not in complaint:
        assert str(secrets_file) in message
    assert SECRET not in message


def test_a_named_secrets_file_must_exist_and_be_text(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(SecretsError, match=r"nowhere\.json: does not exist"):
        load_secrets({"DOC_RUNS_SECRETS_FILE": str(missing)})
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(SecretsError, match="is not UTF-8 text") as caught:
        load_secrets({"DOC_RUNS_SECRETS_FILE": str(binary)})
    assert SECRET not in str(caught.value)
    with pytest.raises(SecretsError, match="cannot be read"):
        load_secrets({"DOC_RUNS_SECRETS_FILE": str(tmp_path)})


@pytest.mark.parametrize(("variable", "value", "complaint"), [
    ("DOC_RUNS_API_TOKENS", SECRET, "entry 1 is not of the form tenant=value"),
    ("DOC_RUNS_API_TOKENS", f"acme=ok,{SECRET}", "entry 2 is not of the form"),
    ("DOC_RUNS_API_TOKENS", f"Bad Name={SECRET}", "entry 1 has a tenant name that does not"),
    ("DOC_RUNS_API_TOKENS", f"{SECRET}=acme", "entry 1 has a tenant name that does not"),
    ("DOC_RUNS_API_TOKENS", "acme=", "entry 1 has an empty value"),
    ("DOC_RUNS_API_TOKENS", f"acme={SECRET},", "entry 2 is not of the form"),
    ("DOC_RUNS_SIGNING_KEYS", "acme=  ", "entry 1 has an empty value"),
    ("DOC_RUNS_SIGNING_KEYS", f"acme={SECRET},acme=other", "names a tenant twice"),
    ("DOC_RUNS_API_TOKENS", f"acme={SECRET},beta={SECRET}", "more than one tenant"),
])
def test_a_malformed_environment_variable_is_named_without_its_value(
        variable: str, value: str, complaint: str) -> None:
    with pytest.raises(SecretsError) as caught:
        load_secrets({variable: value})
    message = str(caught.value)
    assert complaint in message
    if "more than one tenant" not in complaint:
        assert variable in message
    assert SECRET not in message


def test_token_lookup(secrets: Secrets) -> None:
    assert secrets.tenant_for_token("acme-token-1") == "acme"
    assert secrets.tenant_for_token("beta-token-1") == "beta"
    assert secrets.tenant_for_token("acme-token-2") is None
    assert secrets.tenant_for_token("acme-token-1 ") is None
    assert secrets.tenant_for_token("") is None
    assert secrets.tenant_for_token(_sha("acme-token-1")) is None


def test_sign_and_verify(secrets: Secrets) -> None:
    signature = secrets.sign("acme", b"payload")
    assert signature == hmac.new(b"acme-signing-key", b"payload", hashlib.sha256).hexdigest()
    assert secrets.verify("acme", b"payload", signature)
    assert not secrets.verify("acme", b"payload!", signature)
    assert not secrets.verify("beta", b"payload", signature)
    assert not secrets.verify("acme", b"payload", signature.upper())
    assert not secrets.verify("acme", b"payload", signature[:-1])
    assert not secrets.verify("nobody", b"payload", signature)
    with pytest.raises(UnknownTenant):
        secrets.sign("nobody", b"payload")
    tokens_only = load_secrets({"DOC_RUNS_API_TOKENS": "acme=t"})
    with pytest.raises(UnknownTenant):
        tokens_only.sign("acme", b"payload")


def test_secrets_never_show_in_their_repr(secrets: Secrets) -> None:
    text = repr(secrets) + repr(secrets.tenant_secrets("acme"))
    assert "acme" in text
    assert "acme-signing-key" not in text
    assert "acme-token-1" not in text


def test_may_access_only_the_owner() -> None:
    assert may_access("acme", "acme")
    assert not may_access("acme", "beta")
    assert not may_access("acme", None)
    assert not may_access("", "")


def test_add_tenant_writes_a_private_file_whose_token_works(tmp_path: Path) -> None:
    secrets_file = tmp_path / "conf" / "doc_runs" / "secrets.json"
    token = add_tenant(secrets_file, "acme")
    assert len(token) >= 40
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets_file.parent.stat().st_mode) == 0o700
    assert token not in secrets_file.read_text()
    assert [p.name for p in secrets_file.parent.iterdir()] == ["secrets.json"]

    env = {"DOC_RUNS_SECRETS_FILE": str(secrets_file)}
    first = load_secrets(env)
    assert first.tenant_for_token(token) == "acme"
    signature = first.sign("acme", b"m")

    second_token = add_tenant(secrets_file, "acme")
    beta_token = add_tenant(secrets_file, "beta")
    again = load_secrets(env)
    assert second_token != token
    assert again.tenant_for_token(token) == "acme"
    assert again.tenant_for_token(second_token) == "acme"
    assert again.tenant_for_token(beta_token) == "beta"
    assert again.verify("acme", b"m", signature)  # the key was kept
    assert not again.verify("beta", b"m", signature)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    stored = json.loads(secrets_file.read_text())["tenants"]
    assert len(stored["acme"]["token_sha256"]) == 2


def test_add_tenant_refuses_bad_names_and_keeps_a_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="does not match"):
        add_tenant(tmp_path / "secrets.json", "Not Valid")
    secrets_file = _write(tmp_path / "secrets.json", "{broken")
    with pytest.raises(SecretsError, match="is not JSON"):
        add_tenant(secrets_file, "acme")
    assert secrets_file.read_text() == "{broken"
