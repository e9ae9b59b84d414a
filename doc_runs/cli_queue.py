"""doc-runs submit, dlq, tenant and api: the queue's and the HTTP side of the command line.
Thin: the intake stores, the producer enqueues, the dead-letter module and the API app do the
rest."""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from doc_runs.auth import load_secrets
from doc_runs.project import default_stream_prefix, ensure_dagster_home
from doc_runs.queue.streams import StreamNames, connect_redis, redis_url_shown
from doc_runs.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class ConfigurationProblem(Exception):
    """A setting (an environment variable, the secrets file) is wrong; the message says which."""


def queue_of(settings: Settings) -> tuple[Any, StreamNames]:
    """A Redis client and the key names, as the code location's runs see them (the same
    DAGSTER_HOME, so the same Redis key prefix)."""
    ensure_dagster_home(settings.dagster_home)
    prefix = settings.stream_prefix or default_stream_prefix(settings.dagster_home)
    return connect_redis(settings.redis_url), StreamNames(prefix)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"doc-runs: {message}", file=sys.stderr)
    return code


def submit(args: argparse.Namespace) -> int:
    import redis
    from pydantic import ValidationError

    from doc_runs.auth import SecretsError, UnknownTenant, valid_tenant
    from doc_runs.cli import collect_inputs
    from doc_runs.core.catalog import DocumentCatalog
    from doc_runs.core.intake import IntakeRefused, store_file
    from doc_runs.core.store import DocumentStore, display_name
    from doc_runs.queue.envelope import MAX_IDEMPOTENCY_KEY, Options, UploadRef, build_envelope
    from doc_runs.queue.producer import (
        bind_idempotency_key,
        default_idempotency_key,
        enqueue,
        request_fingerprint,
    )

    if not valid_tenant(args.tenant):
        return _fail(f"{args.tenant!r} is not a tenant name", EXIT_USAGE)
    try:
        extra_fields = json.loads(args.extra_fields) if args.extra_fields else {}
        options = Options(extra_fields=extra_fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'extra_fields'}: "
                             f"{e['msg']}" for e in exc.errors())
        return _fail(f"--extra-fields must be a JSON object of field names (lower-case "
                     f"letters, digits, _) to descriptions: {problems}", EXIT_USAGE)
    except ValueError as exc:
        return _fail(f"--extra-fields is not JSON: {exc}", EXIT_USAGE)
    key = args.idempotency_key
    if key is not None and not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()):
        return _fail(f"--idempotency-key must be 1 to {MAX_IDEMPOTENCY_KEY} printable "
                     "characters", EXIT_USAGE)
    try:
        files = collect_inputs(args.paths)
    except FileNotFoundError as missing:
        return _fail(f"no such file or directory: {missing}", EXIT_USAGE)
    if args.idempotency_key and len(files) != 1:
        return _fail("--idempotency-key names one request: give one file", EXIT_USAGE)
    try:
        secrets = load_secrets(args.settings.secrets_variables())
    except SecretsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.tenant not in secrets.tenants():
        return _fail(f"tenant {args.tenant!r} has no signing key here: add one with "
                     f"`doc-runs tenant add {args.tenant}` or DOC_RUNS_SIGNING_KEYS", EXIT_USAGE)
    settings = args.settings
    client, names = queue_of(settings)
    store = DocumentStore(settings.store_dir)
    max_bytes = settings.max_bytes
    catalog = DocumentCatalog(settings.catalog_url())
    failed = False
    try:
        for path in files:
            line: dict[str, Any] = {"path": display_name(path), "tenant": args.tenant}
            try:
                document_id = store_file(store, path, tenant=args.tenant, max_bytes=max_bytes)
            except IntakeRefused as refused:
                failed = True
                line.update(document_id=None, entry_id=None, status="refused",
                            reason=refused.reason.value, detail=refused.detail)
                _print(line, args.json)
                continue
            key = args.idempotency_key or default_idempotency_key(document_id, extra_fields)
            if not bind_idempotency_key(client, names, args.tenant, key,
                                        request_fingerprint(document_id, extra_fields),
                                        settings.stream_retention_s):
                failed = True
                line.update(document_id=document_id, entry_id=None, status="refused",
                            reason="idempotency_conflict",
                            detail=f"the idempotency key {key!r} was used for another "
                            "document or other options; choose a new key")
                _print(line, args.json)
                continue
            try:
                envelope = build_envelope(secrets, tenant=args.tenant,
                                          document=UploadRef(kind="upload",
                                                             document_id=document_id),
                                          idempotency_key=key, options=options)
            except UnknownTenant as exc:
                return _fail(str(exc), EXIT_USAGE)
            # Listed as pending for its tenant before the queue sensor batches it; unlisted
            # again where the message cannot be queued (no run would ever take it).
            listed_now = catalog.note_stored(document_id, args.tenant,
                                             store.source_names(document_id))
            try:
                entry_id = enqueue(client, names, envelope)
            except redis.RedisError:
                if listed_now:  # an earlier submit of the same bytes may be on the queue
                    catalog.forget_unbatched(document_id)
                raise
            line.update(document_id=document_id, entry_id=entry_id, status="enqueued",
                        idempotency_key=key)
            _print(line, args.json)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return _fail(f"Redis at {redis_url_shown(settings.redis_url)} did not answer ({exc}); "
                     "the files are stored, nothing was enqueued for the rest: submit them "
                     "again")
    finally:
        client.close()
        catalog.close()
    return EXIT_FAILED if failed else EXIT_OK


def _print(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(line, ensure_ascii=False), flush=True)
    elif line["status"] == "enqueued":
        print(f"{line['path']}: document {line['document_id']} enqueued as {line['entry_id']}")
    else:
        print(f"{line['path']}: refused ({line['reason']}): {line['detail']}")


def dlq(args: argparse.Namespace) -> int:
    import redis

    from doc_runs.auth import SecretsError
    from doc_runs.queue.dead_letters import (
        DeadLetterNotFound,
        get_dead_letter,
        list_dead_letters,
        purge_dead_letter,
        replay_dead_letter,
    )
    from doc_runs.queue.envelope import Poison

    client, names = queue_of(args.settings)
    try:
        if args.dlq_command == "list":
            letters = list_dead_letters(client, names, args.limit)
            for letter in letters:
                if args.json:
                    print(json.dumps(_letter_json(letter), ensure_ascii=False))
                else:
                    print(f"{letter.id}  {letter.reason:<26} seen {letter.times_seen}x, first "
                          f"{letter.first_seen}  {letter.detail[:80]}")
            if not letters and not args.json:
                print("no dead letters")
            return EXIT_OK
        if args.dlq_command == "show":
            letter = get_dead_letter(client, names, args.id)
            if letter is None:
                return _fail(f"no dead letter {args.id!r}")
            print(json.dumps(_letter_json(letter), ensure_ascii=False, indent=2))
            return EXIT_OK
        if args.dlq_command == "purge":
            if not purge_dead_letter(client, names, args.id):
                return _fail(f"no dead letter {args.id!r}")
            print(f"purged {args.id}")
            return EXIT_OK
        # replay
        payload = None
        if args.payload == "-":
            payload = sys.stdin.buffer.read()
        elif args.payload:
            try:
                payload = Path(args.payload).read_bytes()
            except OSError as exc:
                return _fail(f"--payload {args.payload}: {exc.strerror or exc}", EXIT_USAGE)
        try:
            secrets = load_secrets(args.settings.secrets_variables())
            entry_id = replay_dead_letter(client, names, args.id, secrets,
                                          payload)
        except DeadLetterNotFound as exc:
            return _fail(str(exc))
        except Poison as poison:
            return _fail(f"still poison ({poison.reason.value}): {poison.detail}; the dead "
                         "letter stays. Correct the message and pass it with --payload FILE")
        except SecretsError as exc:
            return _fail(str(exc), EXIT_USAGE)
        print(f"replayed {args.id} as {entry_id}")
        return EXIT_OK
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return _fail(f"Redis at {redis_url_shown(args.settings.redis_url)} did not answer ({exc})")
    finally:
        client.close()


def _letter_json(letter: Any) -> dict[str, Any]:
    data = letter.model_dump(exclude={"payload"})
    data["payload"] = letter.payload_text()
    return data


def tenant(args: argparse.Namespace) -> int:
    from doc_runs.auth import SecretsError, add_tenant, rotate_tenant, valid_tenant

    if not valid_tenant(args.name):
        return _fail(f"{args.name!r} is not a tenant name (lower-case letters, digits, - and "
                     "_, at most 63)", EXIT_USAGE)
    secrets_file = args.secrets_file or args.settings.secrets_file_or_default()
    if not secrets_file:
        return _fail("no secrets file: set DOC_RUNS_SECRETS_FILE or pass --secrets-file",
                     EXIT_USAGE)
    token_file = None
    if args.token_file:
        # Opened before the secrets change: a token file that cannot be written must not
        # leave a rotated tenant whose only new token was never kept.
        try:
            token_file = _open_token_file(Path(args.token_file))
        except OSError as exc:
            return _fail(f"cannot write the token file {args.token_file}: "
                         f"{exc.strerror or exc}; nothing was changed", EXIT_USAGE)
    try:
        if args.tenant_command == "rotate":
            token = rotate_tenant(Path(secrets_file), args.name, keep_tokens=args.keep_tokens)
        else:
            token = add_tenant(Path(secrets_file), args.name)
    except (SecretsError, OSError) as exc:
        if token_file is not None:
            token_file.abandon()
        detail = str(exc) if isinstance(exc, SecretsError) else \
            f"secrets file {secrets_file}: {exc.strerror or exc}"
        return _fail(detail)
    if token_file is not None:
        token_file.keep(token + "\n")
    else:
        print(token)
    if args.tenant_command == "rotate":
        from doc_runs.auth import environment_secrets_of

        for variable in environment_secrets_of(args.name, args.settings.secrets_variables()):
            print(f"doc-runs: warning: {variable} also has {args.name!r}, and still applies: "
                  "change it where the processes' environment is set", file=sys.stderr)
    return EXIT_OK


class _TokenFile:
    """A token file opened for writing: mode 0600, never through a symbolic link; an existing
    file keeps its content until `keep` replaces it, a new one is removed by `abandon`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created = not path.exists()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(self.fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            os.fchmod(self.fd, 0o600)
        except BaseException:
            os.close(self.fd)
            raise

    def keep(self, text: str) -> None:
        try:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, text.encode())
            os.fsync(self.fd)
        finally:
            os.close(self.fd)

    def abandon(self) -> None:
        os.close(self.fd)
        if self.created:
            self.path.unlink(missing_ok=True)


def _open_token_file(path: Path) -> _TokenFile:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _TokenFile(path)


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def api(args: argparse.Namespace) -> int:
    from doc_runs.api.server import serve
    from doc_runs.auth import SecretsError

    # A wrong secrets file stops the start with its message, before uvicorn starts (the
    # settings were checked as the command started).
    try:
        load_secrets(args.settings.secrets_variables())
    except SecretsError as exc:
        raise ConfigurationProblem(str(exc)) from None
    serve(args.host, args.port, args.settings)
    return EXIT_OK


def add_queue_commands(commands: Any) -> None:
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

    letters = commands.add_parser("dlq", help="list, show, replay or purge dead letters")
    verbs = letters.add_subparsers(dest="dlq_command", required=True)
    listing = verbs.add_parser("list", help="dead letters, the first seen first")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", type=_positive, default=100)
    show = verbs.add_parser("show", help="one dead letter with its payload")
    show.add_argument("id")
    replay = verbs.add_parser(
        "replay", help="validate again and put the message (or a corrected one) back")
    replay.add_argument("id")
    replay.add_argument("--payload", help="a corrected envelope: a file, or - for stdin")
    purge = verbs.add_parser("purge", help="delete one dead letter (its id is required)")
    purge.add_argument("id")
    letters.set_defaults(handler=dlq)

    tenants = commands.add_parser("tenant", help="add a tenant (or a new token for one), or "
                                  "rotate its keys")
    tenant_verbs = tenants.add_subparsers(dest="tenant_command", required=True)
    add = tenant_verbs.add_parser(
        "add", help="give a tenant a new API token and, when it has none, a signing key; "
        "prints the token (only its hash is kept)")
    rotate = tenant_verbs.add_parser(
        "rotate", help="give an existing tenant a new signing key and a new API token, "
        "revoking its other tokens; prints the token. Unread messages signed with the old "
        "key are dead-lettered (bad_signature): rotate with the queue drained")
    rotate.add_argument("--keep-tokens", action="store_true",
                        help="keep the tenant's other API tokens valid")
    for verb in (add, rotate):
        verb.add_argument("name")
        verb.add_argument("--secrets-file", help="default: DOC_RUNS_SECRETS_FILE")
        verb.add_argument("--token-file", help="write the token here (mode 0600) instead of "
                          "printing it")
    tenants.set_defaults(handler=tenant)

    server = commands.add_parser(
        "api", help="serve the HTTP API (upload, status, events) with uvicorn",
        description="Uploads are stored and enqueued like `doc-runs submit`; status and "
        "events are read from what the runs recorded. Tokens: DOC_RUNS_SECRETS_FILE or "
        "DOC_RUNS_API_TOKENS. OpenAPI at /openapi.json, docs at /docs.")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8000)
    server.set_defaults(handler=api)
