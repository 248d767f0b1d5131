"""`nexwatt-admin create-topics | export-schemas | dead-letters list|show|replay |
keys create|list|revoke`.

Exit codes: 0 done, 1 Kafka failed, 2 usage error or nothing found (a letter, a record, a key).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiokafka.errors import KafkaError

from nexwatt_admin import dead_letters as dl
from nexwatt_admin import keys
from nexwatt_shared.arguments import moment
from nexwatt_shared.auth import Scope
from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.schema_export import render_all
from nexwatt_shared.settings import ServiceSettings


def _offset(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not an offset: {text!r}")
    return int(text)


def _dead_letter_parsers(sub: argparse._SubParsersAction) -> None:
    letters = sub.add_parser("dead-letters", help="list, show and replay dead letters")
    commands = letters.add_subparsers(dest="letters_command", required=True)
    listing = commands.add_parser("list", help="one line per letter in dead.letter")
    show = commands.add_parser("show", help="one letter whole, with its original value")
    show.add_argument("offset", type=_offset, help="the letter's offset in dead.letter")
    replay = commands.add_parser(
        "replay", help="send letters' original records back to their origin topics"
    )
    replay.add_argument(
        "offsets", type=_offset, nargs="*", metavar="OFFSET", help="letters' offsets in dead.letter"
    )
    replay.add_argument(
        "--all", action="store_true", help="every letter of --group and --topic (and --since)"
    )
    replay.add_argument("--dry-run", action="store_true", help="print what would be sent")
    replay.add_argument(
        "--force", action="store_true", help="replay to origin topics outside the registry too"
    )
    for command in (listing, replay):
        command.add_argument("--group", help="only letters of this consumer group")
        command.add_argument("--topic", help="only letters from this origin topic")
        command.add_argument(
            "--since",
            type=moment,
            help="only letters that failed from then on (ISO 8601; UTC if no offset is given)",
        )


async def _dead_letters(args: argparse.Namespace, settings: ServiceSettings) -> None:
    kafka = dl.KafkaAccess.from_settings(settings)
    if args.letters_command == "show":
        await dl.show_letter(kafka, args.offset)
        return
    flt = dl.Filter(args.group, args.topic, args.since)
    if args.letters_command == "list":
        await dl.list_letters(kafka, flt)
    else:
        await dl.replay_letters(
            kafka, flt if args.all else args.offsets, force=args.force, dry_run=args.dry_run
        )


def _key_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("keys", help="create, list and revoke tenants' API keys")
    parser.add_argument(
        "--database",
        default=ServiceSettings(service_name="onboarding").database,
        help="onboarding's database (default: NEXWATT_POSTGRES_DATABASE or nexwatt_onboarding)",
    )
    commands = parser.add_subparsers(dest="keys_command", required=True)
    create = commands.add_parser("create", help="a new key; its secret is printed once")
    create.add_argument("--tenant", required=True, help="the tenant (created if new)")
    create.add_argument(
        "--scope",
        type=Scope,
        action="append",
        required=True,
        choices=list(Scope),
        help="a scope of the key (repeat for several)",
    )
    create.add_argument("--name", default="", help="what the key is for")
    commands.add_parser("list", help="every key, without secrets")
    revoke = commands.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id, as `keys list` shows")


async def _keys(args: argparse.Namespace, settings: ServiceSettings) -> None:
    url = settings.postgres_url
    if args.keys_command == "create":
        key, token = await keys.create(url, args.database, args.tenant, args.scope, args.name)
        # Only the token on stdout, so that a script can take it: KEY=$(nexwatt-admin keys ...)
        scopes = ", ".join(sorted(key.scopes))
        print(
            f"key {key.key_id} of tenant {key.tenant_id} ({scopes}); its token, shown this once:",
            file=sys.stderr,
        )
        print(token)
    elif args.keys_command == "list":
        for key in await keys.listing(url, args.database):
            print(keys.key_line(key))
    else:
        await keys.revoke(url, args.database, args.key_id)
        print(f"key {args.key_id} revoked")


def main() -> None:
    parser = argparse.ArgumentParser(prog="nexwatt-admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    topics = sub.add_parser("create-topics", help="create every topic in the registry")
    topics.add_argument("--replication-factor", type=int, default=1)
    export = sub.add_parser("export-schemas", help="write JSON Schemas and AsyncAPI")
    export.add_argument("--out", type=Path, default=Path("schemas"))
    _dead_letter_parsers(sub)
    _key_parsers(sub)
    args = parser.parse_args()
    if args.command == "dead-letters" and args.letters_command == "replay":
        # Either letters by offset, or all of one group's letters from one topic: never
        # everything by accident.
        if args.all and (args.offsets or args.group is None or args.topic is None):
            parser.error("replay --all takes --group and --topic, and no offsets")
        if not args.all and (not args.offsets or args.group or args.topic or args.since):
            parser.error("replay takes offsets, or --all with --group and --topic")

    settings = ServiceSettings(service_name="admin")
    configure_logging("admin", settings.log_level)
    if args.command == "create-topics":
        created = asyncio.run(
            create_topics(
                settings.kafka_bootstrap_servers,
                replication_factor=args.replication_factor,
                security=settings.kafka_security(),
            )
        )
        print(f"topics created: {', '.join(created) or 'none (all existed)'}")
    elif args.command == "export-schemas":
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in render_all().items():
            (args.out / name).write_text(text)
        print(f"wrote {len(render_all())} files to {args.out}")
    elif args.command == "keys":
        try:
            asyncio.run(_keys(args, settings))
        except keys.KeyCommandError as exc:
            print(f"nexwatt-admin keys: {exc}", file=sys.stderr)
            sys.exit(2)
    else:
        try:
            asyncio.run(_dead_letters(args, settings))
        except dl.LetterError as exc:
            print(f"nexwatt-admin dead-letters: {exc}", file=sys.stderr)
            sys.exit(2)
        except KafkaError as exc:
            print(f"nexwatt-admin dead-letters: Kafka: {exc!r}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
