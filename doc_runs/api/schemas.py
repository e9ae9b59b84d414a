"""The JSON the endpoints answer with; also what OpenAPI documents."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class DocumentState(StrEnum):
    pending = "pending"  # stored and enqueued; no stage has recorded anything yet
    incomplete = "incomplete"  # some stages recorded, not the last: running, or its run
    # failed on a transient error and awaits re-execution
    succeeded = "succeeded"
    quarantined = "quarantined"
    failed = "failed"  # its last run failed on a transient error; awaits re-execution


class UploadAccepted(BaseModel):
    document_id: str
    status_url: str
    events_url: str
    entry_id: str = Field(description="The entry id of the message on the documents stream.")
    idempotency_key: str


class StageState(BaseModel):
    status: str
    reason: str | None = None
    detail: str | None = None
    duration_s: float | None = None
    attempt: int | None = None
    run_id: str | None = None


class SummaryView(BaseModel):
    text: str
    citations: list[str] = Field(description="Chunk ids the summary's sentences draw on.")


class ValueView(BaseModel):
    value: str | float | dict[str, str | float] = Field(
        description="Normalized: ISO 8601 for a date, {amount, unit} for a duration, "
        "{amount, currency} for money, a number, or text (names without role words).")
    display: str = Field(description="The value as a person reads it, e.g. \"2 years\".")
    text: str = Field(description="The words in the document it was read from.")
    citations: list[str] = Field(description="Chunk ids (or p<N> pages) it was read from.")
    cited: bool


class FieldView(BaseModel):
    type: str = Field(description="text, date, organization, person, party, place, "
                      "duration, money, number or enum")
    values: list[ValueView] = Field(description="Empty when the document does not say.")
    cited: bool = Field(description="Every value has a citation.")


class DocumentStatus(BaseModel):
    document_id: str
    status: DocumentState
    reason: str | None = None
    detail: str | None = None
    source_names: list[str] = Field(
        description="Names the document arrived under; bytes that are not UTF-8 appear as "
        "\\xNN escapes.")
    stages: dict[str, StageState | None] = Field(
        description="Every stage in pipeline order; null where nothing is recorded yet.")
    summary: SummaryView | None = None
    findings: dict[str, FieldView] | None = None


class DocumentListItem(BaseModel):
    document_id: str
    status: DocumentState
    reason: str | None = None
    source_names: list[str]


class DocumentList(BaseModel):
    documents: list[DocumentListItem]
    next_after: str | None = Field(
        None, description="Pass as `after` for the next page; null when there is no more (a full "
        "page may be followed by an empty one).")


class Health(BaseModel):
    status: str
    redis: str
    store: str
    catalog: str
