"""Who may call: a bearer token of a known tenant, read from a secrets file that is watched,
so tenants added while the server runs can call at once."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import pytest

from doc_runs.auth import add_tenant, token_sha256
from doc_runs_tests.api_tests.conftest import ApiUnderTest
from doc_runs_tests.helpers import assert_nothing_left

DOCUMENT = "/v1/documents/" + "0" * 64
CALLS = [("GET", "/v1/documents"), ("GET", DOCUMENT), ("GET", DOCUMENT + "/events"),
         ("POST", "/v1/documents")]


def call(api: ApiUnderTest, method: str, path: str,
         headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=api.url, timeout=20) as client:
        if method == "POST":
            return client.post(path, files={"file": ("a.txt", b"hello")}, headers=headers)
        return client.get(path, headers=headers)


def rewrite_secrets(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Change the secrets file the way an operator's tool does: a whole new file, renamed
    into place."""
    document = json.loads(path.read_text())
    change(document)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, path)


@pytest.mark.parametrize(("method", "path"), CALLS)
@pytest.mark.parametrize(("authorization", "said"), [
    (None, "missing"),
    ("", "missing"),
    ("Bearer", "malformed"),
    ("Bearer abc=def", "malformed"),
    ("Token abc", "malformed"),
    ("Basic YWNtZTpzZWNyZXQ=", "malformed"),
    ("Bearer two words", "malformed"),
    ("Bearer wrong-token-" + "x" * 20, "unknown"),
])
def test_a_missing_malformed_or_wrong_token_is_401(api: ApiUnderTest, method: str, path: str,
                                                   authorization: str | None,
                                                   said: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = call(api, method, path, headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert said in response.json()["detail"]
    # Never echoed: a token sent the wrong way is still a secret.
    if authorization and len(authorization) > 7:
        assert authorization.split(" ", 1)[-1] not in response.text


def test_a_good_token_passes(api: ApiUnderTest) -> None:
    for scheme in ("Bearer", "bearer"):
        response = call(api, "GET", "/v1/documents",
                        {"Authorization": f"{scheme} {api.tokens['acme']}"})
        assert response.status_code == 200


def test_healthz_and_the_docs_need_no_token(api: ApiUnderTest) -> None:
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert call(api, "GET", path).status_code == 200


def test_a_tenant_added_while_the_server_runs_can_call_at_once(api: ApiUnderTest) -> None:
    before = call(api, "GET", "/v1/documents", {"Authorization": "Bearer not-yet-issued"})
    gamma = add_tenant(api.secrets_file, "gamma")
    second_for_acme = add_tenant(api.secrets_file, "acme")

    assert before.status_code == 401
    for token in (gamma, second_for_acme, api.tokens["acme"]):
        response = call(api, "GET", "/v1/documents", {"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    upload = call(api, "POST", "/v1/documents", {"Authorization": f"Bearer {gamma}"})
    assert upload.status_code == 202, upload.text


def test_a_tenant_without_a_signing_key_gets_500_naming_the_fix(api: ApiUnderTest) -> None:
    token = "nokey-token-" + uuid.uuid4().hex
    rewrite_secrets(api.secrets_file, lambda d: d["tenants"].update(
        {"nokey": {"token_sha256": [token_sha256(token)]}}))
    data = f"{uuid.uuid4().hex} unsigned\n".encode()
    with httpx.Client(base_url=api.url, timeout=20) as client:
        listing = client.get("/v1/documents", headers={"Authorization": f"Bearer {token}"})
        upload = client.post("/v1/documents", files={"file": ("a.txt", data)},
                             headers={"Authorization": f"Bearer {token}"})

    assert listing.status_code == 200  # it may read; it cannot sign
    assert upload.status_code == 500
    assert "doc-runs tenant add nokey" in upload.json()["detail"]
    assert_nothing_left(api, data, tenant="nokey")


def test_a_broken_secrets_file_fails_closed_and_recovers(api: ApiUnderTest) -> None:
    good = api.secrets_file.read_text()
    broken = api.secrets_file.with_name(".broken")
    broken.write_text('{"tenants": ')
    os.replace(broken, api.secrets_file)
    try:
        response = call(api, "GET", "/v1/documents", api.auth("acme"))
        assert response.status_code == 500
        assert "secrets file" in response.json()["detail"]
        assert api.tokens["acme"] not in response.text
    finally:
        restored = api.secrets_file.with_name(".restored")
        restored.write_text(good)
        os.replace(restored, api.secrets_file)
    assert call(api, "GET", "/v1/documents", api.auth("acme")).status_code == 200
