"""The OpenAPI spec documents every endpoint, the bearer scheme and the error answers;
/healthz answers ok when Redis and the store do."""

from __future__ import annotations

from typing import Any

import pytest

from doc_runs_tests.api_tests.conftest import ApiUnderTest


@pytest.fixture(scope="module")
def spec(api: ApiUnderTest) -> dict[str, Any]:
    with api.client(None) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def test_every_endpoint_is_documented_with_its_errors(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    expected = {
        ("/v1/documents", "post"): {"202", "400", "401", "413", "415", "500", "503"},
        ("/v1/documents", "get"): {"200", "401", "422"},
        ("/v1/documents/{document_id}", "get"): {"200", "401", "404"},
        ("/v1/documents/{document_id}/rerun", "post"): {"202", "401", "404", "409", "503"},
        ("/v1/documents/{document_id}/events", "get"): {"200", "400", "401", "404", "503"},
        ("/healthz", "get"): {"200", "503"},
    }
    for (path, method), codes in expected.items():
        operation = paths[path][method]
        assert codes <= set(operation["responses"]), (path, method)
        for code in codes - {"200", "202", "422"}:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema["$ref"].rsplit("/", 1)[-1] in {"ErrorBody", "Health"}
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["detail"]


def test_the_bearer_scheme_guards_every_v1_operation(spec: dict[str, Any]) -> None:
    [(name, scheme)] = spec["components"]["securitySchemes"].items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            guarded = {next(iter(s)) for s in operation.get("security", [])}
            assert guarded == ({name} if path.startswith("/v1/") else set()), path


def test_the_upload_body_and_the_event_stream_are_described(spec: dict[str, Any]) -> None:
    upload = spec["paths"]["/v1/documents"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"]["format"] == "binary"
    assert {"idempotency_key", "extra_fields"} <= set(form["properties"])
    events = spec["paths"]["/v1/documents/{document_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    names = {p["name"] for p in events["parameters"]}
    assert {"Last-Event-ID", "last_event_id"} <= names


def test_healthz_is_ok(api: ApiUnderTest) -> None:
    with api.client(None) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": "ok", "store": "ok", "catalog": "ok"}
