"""doc-runs submit: stores files and puts a signed message for each on the queue. Thin: the
intake stores, the producer enqueues, the queue sensor starts the runs."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from doc_runs.auth import Secrets, SecretsError, UnknownTenant, load_secrets, valid_tenant
from doc_runs.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, collect_inputs, fail, queue_of
from doc_runs.core.intake import IntakeRefused, store_file
from doc_runs.core.store import DocumentStore, display_name
from doc_runs.queue.envelope import MAX_IDEMPOTENCY_KEY, Options, UploadRef, build_envelope
from doc_runs.queue.streams import redis_url_shown
from doc_runs.settings import Settings


@dataclass
class Request:
    """What one `doc-runs submit` asks for, its arguments checked."""

    tenant: str
    files: list[str]
    extra_fields: dict[str, Any]
    options: Options
    idempotency_key: str | None
    secrets: Secrets


def checked_request(args: argparse.Namespace) -> Request | int:
    """The request, or the exit code of a usage error (said on standard error)."""
    if not valid_tenant(args.tenant):
        return fail(f"{args.tenant!r} is not a tenant name", EXIT_USAGE)
    try:
        extra_fields = json.loads(args.extra_fields) if args.extra_fields else {}
        options = Options(extra_fields=extra_fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'extra_fields'}: "
                             f"{e['msg']}" for e in exc.errors())
        return fail(f"--extra-fields must be a JSON object of field names (lower-case "
                    f"letters, digits, _) to descriptions: {problems}", EXIT_USAGE)
    except ValueError as exc:
        return fail(f"--extra-fields is not JSON: {exc}", EXIT_USAGE)
    key = args.idempotency_key
    if key is not None and not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()):
        return fail(f"--idempotency-key must be 1 to {MAX_IDEMPOTENCY_KEY} printable "
                    "characters", EXIT_USAGE)
    try:
        files = collect_inputs(args.paths)
    except FileNotFoundError as missing:
        return fail(f"no such file or directory: {missing}", EXIT_USAGE)
    if key and len(files) != 1:
        return fail("--idempotency-key names one request: give one file", EXIT_USAGE)
    try:
        secrets = load_secrets(args.settings.secrets_variables())
    except SecretsError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.tenant not in secrets.tenants():
        return fail(f"tenant {args.tenant!r} has no signing key here: add one with "
                    f"`doc-runs tenant add {args.tenant}` or DOC_RUNS_SIGNING_KEYS", EXIT_USAGE)
    return Request(args.tenant, files, extra_fields, options, key, secrets)


class Submitter:
    """Stores each file and queues a signed message for it, for one request."""

    def __init__(self, request: Request, settings: Settings) -> None:
        from doc_runs.core.catalog import DocumentCatalog

        self.request, self.settings = request, settings
        self.client, self.names = queue_of(settings)
        self.store = DocumentStore(settings.store_dir)
        self.catalog = DocumentCatalog(settings.catalog_url())

    def close(self) -> None:
        self.client.close()
        self.catalog.close()

    def submit_file(self, path: str) -> dict[str, Any]:
        """The file's line: enqueued, or refused with a reason. Raises redis errors (nothing
        of this file is queued then) and UnknownTenant."""
        import redis

        from doc_runs.queue.producer import (
            bind_idempotency_key,
            default_idempotency_key,
            enqueue,
            request_fingerprint,
        )

        request = self.request
        line: dict[str, Any] = {"path": display_name(path), "tenant": request.tenant}
        try:
            document_id = store_file(self.store, path, tenant=request.tenant,
                                     max_bytes=self.settings.max_bytes)
        except IntakeRefused as refused:
            return {**line, "document_id": None, "entry_id": None, "status": "refused",
                    "reason": refused.reason.value, "detail": refused.detail}
        key = request.idempotency_key or default_idempotency_key(document_id,
                                                                 request.extra_fields)
        if not bind_idempotency_key(self.client, self.names, request.tenant, key,
                                    request_fingerprint(document_id, request.extra_fields),
                                    self.settings.stream_retention_s):
            return {**line, "document_id": document_id, "entry_id": None, "status": "refused",
                    "reason": "idempotency_conflict",
                    "detail": f"the idempotency key {key!r} was used for another document or "
                    "other options; choose a new key"}
        envelope = build_envelope(request.secrets, tenant=request.tenant,
                                  document=UploadRef(kind="upload", document_id=document_id),
                                  idempotency_key=key, options=request.options)
        # Listed as pending for its tenant before the queue sensor batches it; unlisted again
        # where the message cannot be queued (no run would ever take it).
        listed_now = self.catalog.note_stored(document_id, request.tenant,
                                              self.store.source_names(document_id))
        try:
            entry_id = enqueue(self.client, self.names, envelope)
        except redis.RedisError:
            if listed_now:  # an earlier submit of the same bytes may be on the queue
                self.catalog.forget_unbatched(document_id)
            raise
        return {**line, "document_id": document_id, "entry_id": entry_id, "status": "enqueued",
                "idempotency_key": key}


def submit(args: argparse.Namespace) -> int:
    import redis

    request = checked_request(args)
    if isinstance(request, int):
        return request
    submitter = Submitter(request, args.settings)
    failed = False
    try:
        for path in request.files:
            try:
                line = submitter.submit_file(path)
            except UnknownTenant as exc:
                return fail(str(exc), EXIT_USAGE)
            failed = failed or line["status"] != "enqueued"
            _print(line, args.json)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return fail(f"Redis at {redis_url_shown(args.settings.redis_url)} did not answer "
                    f"({exc}); the files are stored, nothing was enqueued for the rest: "
                    "submit them again")
    finally:
        submitter.close()
    return EXIT_FAILED if failed else EXIT_OK


def _print(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(line, ensure_ascii=False), flush=True)
    elif line["status"] == "enqueued":
        print(f"{line['path']}: document {line['document_id']} enqueued as {line['entry_id']}")
    else:
        print(f"{line['path']}: refused ({line['reason']}): {line['detail']}")


def add_commands(commands: Any) -> None:
    run = commands.add_parser(
        "submit", help="store files and put a signed message for each on the queue",
        description="Stores every file under PATH for the tenant and adds a signed message "
        "(envelope v1) per document to the Redis documents stream; the queue sensor starts "
        "the runs. Prints the document id and the stream entry id of each.")
    run.add_argument("paths", nargs="+", metavar="PATH")
    run.add_argument("--tenant", required=True)
    run.add_argument("--json", action="store_true", help="one JSON object per file")
    run.add_argument("--idempotency-key",
                     help="default: the document and its options, so sending the same file "
                     "again starts nothing")
    run.add_argument("--extra-fields", help='JSON: your own findings fields for these '
                     'documents, e.g. \'{"governing_law": "the law that governs it"}\'')
    run.set_defaults(handler=submit)
