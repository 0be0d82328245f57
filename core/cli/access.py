"""``hash-password`` and ``study-settings``: set up logins and what reviewers may see.

    python -m core hash-password            # asks twice, prints a line for [passwords]
    python -m core study-settings --study NAME --reviewers-see-faces yes|no
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy import select

from core.access import Role
from core.access.passwords import hash_password
from core.cli import summary
from db.engine import make_engine, make_sessionmaker
from db.models import Study
from db.stimuli import set_reviewers_see_faces


def register(subparsers: argparse._SubParsersAction) -> None:
    hashing = subparsers.add_parser("hash-password", help=summary("hash-password"), description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    hashing.add_argument("--stdin", action="store_true",
                         help="read the password from the first line of standard input (scripts)")
    hashing.set_defaults(handler=run_hash_password)

    settings = subparsers.add_parser("study-settings", help=summary("study-settings"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_argument("--study", required=True, help="study name")
    settings.add_argument("--reviewers-see-faces", required=True, choices=["yes", "no"],
                          help="show reviewers the original face images (default no: blurred thumbnails)")
    settings.set_defaults(handler=run_study_settings)


def run_hash_password(args: argparse.Namespace) -> int:
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("error: the two entries differ", file=sys.stderr)
            return 1
    if not password:
        print("error: an empty password cannot be hashed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def run_study_settings(args: argparse.Namespace) -> int:
    factory = make_sessionmaker(make_engine(args.db))
    with factory.begin() as session:
        study_id = session.scalar(select(Study.id).where(Study.name == args.study))
        if study_id is None:
            print(f"error: no study named {args.study!r}", file=sys.stderr)
            return 1
        set_reviewers_see_faces(session, study_id, args.reviewers_see_faces == "yes", actor=Role.OPERATOR)
    print(f"{args.study}: reviewers see face images: {args.reviewers_see_faces}")
    return 0
