"""doc-runs tenant: add a tenant (or a new API token for one), or rotate its keys, in the
secrets file."""

from __future__ import annotations

import argparse
import errno
import os
import stat
from pathlib import Path
from typing import Any

from doc_runs.auth import (
    SecretsError,
    add_tenant,
    environment_secrets_of,
    rotate_tenant,
    valid_tenant,
)
from doc_runs.cli.common import EXIT_OK, EXIT_USAGE, fail, say


def tenant(args: argparse.Namespace) -> int:
    if not valid_tenant(args.name):
        return fail(f"{args.name!r} is not a tenant name (lower-case letters, digits, - and "
                    "_, at most 63)", EXIT_USAGE)
    secrets_file = args.secrets_file or args.settings.secrets_file_or_default()
    if not secrets_file:
        return fail("no secrets file: set DOC_RUNS_SECRETS_FILE or pass --secrets-file",
                    EXIT_USAGE)
    token_file = None
    if args.token_file:
        # Opened before the secrets change: a token file that cannot be written must not
        # leave a rotated tenant whose only new token was never kept.
        try:
            token_file = _open_token_file(Path(args.token_file))
        except OSError as exc:
            return fail(f"cannot write the token file {args.token_file}: "
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
        return fail(detail)
    if token_file is not None:
        token_file.keep(token + "\n")
    else:
        print(token)
    if args.tenant_command == "rotate":
        for variable in environment_secrets_of(args.name, args.settings.secrets_variables()):
            say(f"warning: {variable} also has {args.name!r}, and still applies: change it "
                "where the processes' environment is set")
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


def add_commands(commands: Any) -> None:
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
