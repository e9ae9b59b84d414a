"""doc-runs dlq: list, show, replay or purge the queue's dead letters (the dead-letter module
does the work)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from doc_runs.auth import SecretsError, load_secrets
from doc_runs.cli.common import EXIT_OK, EXIT_USAGE, fail, queue_of
from doc_runs.queue.envelope import Poison
from doc_runs.queue.streams import redis_url_shown


def dlq(args: argparse.Namespace) -> int:
    import redis

    from doc_runs.queue.dead_letters import (
        DeadLetterNotFound,
        get_dead_letter,
        list_dead_letters,
        purge_dead_letter,
        replay_dead_letter,
    )

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
                return fail(f"no dead letter {args.id!r}")
            print(json.dumps(_letter_json(letter), ensure_ascii=False, indent=2))
            return EXIT_OK
        if args.dlq_command == "purge":
            if not purge_dead_letter(client, names, args.id):
                return fail(f"no dead letter {args.id!r}")
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
                return fail(f"--payload {args.payload}: {exc.strerror or exc}", EXIT_USAGE)
        try:
            secrets = load_secrets(args.settings.secrets_variables())
            entry_id = replay_dead_letter(client, names, args.id, secrets,
                                          payload)
        except DeadLetterNotFound as exc:
            return fail(str(exc))
        except Poison as poison:
            return fail(f"still poison ({poison.reason.value}): {poison.detail}; the dead "
                        "letter stays. Correct the message and pass it with --payload FILE")
        except SecretsError as exc:
            return fail(str(exc), EXIT_USAGE)
        print(f"replayed {args.id} as {entry_id}")
        return EXIT_OK
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return fail(f"Redis at {redis_url_shown(args.settings.redis_url)} did not answer ({exc})")
    finally:
        client.close()


def _letter_json(letter: Any) -> dict[str, Any]:
    data = letter.model_dump(exclude={"payload"})
    data["payload"] = letter.payload_text()
    return data


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_commands(commands: Any) -> None:
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
