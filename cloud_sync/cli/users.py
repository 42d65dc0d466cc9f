"""`marketsync cloud user add|password|list` and `marketsync cloud token NAME`: the cloud's users and
API tokens from the command line (the first owner is made here; the web UI needs someone to log in).

A password is read from `--password-file` (first line) or, with `--generate FILE`, made here and
written to FILE with mode 0600 — never taken from the command line (it would show in `ps`) and never
printed. A token is printed once (or written to `--out FILE`, 0600); only its hash is kept.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from cloud_sync.access import users
from cloud_sync.cli import fail, load
from cloud_sync.config import ConfigError
from cloud_sync.schema import open_db


def _write_private(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="marketsync cloud", description="users and API tokens of the cloud")
    sub = p.add_subparsers(dest="what", required=True)
    user = sub.add_parser("user", help="add a user, set a password, list users")
    usub = user.add_subparsers(dest="cmd", required=True)
    add = usub.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["owner", "manager", "packer"])
    pw = usub.add_parser("password", help="set a user's password")
    pw.add_argument("name")
    for sp in (add, pw):
        src = sp.add_mutually_exclusive_group(required=True)
        src.add_argument("--password-file", help="read the password from this file's first line")
        src.add_argument("--generate", metavar="FILE", help="make a password and write it to FILE (mode 0600)")
    lst = usub.add_parser("list", help="the users and their roles")
    tok = sub.add_parser("token", help="make an API token for a user (shown once)")
    tok.add_argument("name")
    tok.add_argument("--label", default="")
    tok.add_argument("--out", help="write the token to this file (mode 0600) instead of printing it")
    for sp in (add, pw, lst, tok):
        sp.add_argument("--config")
        sp.add_argument("--db")
    args = p.parse_args(argv)
    try:
        cfg = load(args)  # found as the service finds it
    except ConfigError as exc:
        return fail("marketsync cloud", exc)
    conn = open_db(cfg.db_path)
    try:
        if args.what == "token":
            token = users.new_token(conn, args.name, args.label)
            if args.out:
                _write_private(args.out, token)
                print(f"token for {args.name} written to {args.out}")
            else:
                print(token)
            return 0
        if args.cmd == "list":
            for u in users.list_users(conn):
                print("\t".join([u["name"], u["role"]] + (["disabled"] if u["disabled"] else [])))
            return 0
        if args.password_file:
            try:
                password = Path(args.password_file).read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError):
                print(f"marketsync cloud: cannot read a password from {args.password_file}", file=sys.stderr)
                return 2
        else:
            password = secrets.token_urlsafe(15)
        if args.cmd == "add":
            users.add_user(conn, args.name, password, args.role)
        else:
            users.set_password(conn, args.name, password)
        if args.generate:
            _write_private(args.generate, password)
            print(f"user {args.name}: password written to {args.generate}")
        else:
            print(f"user {args.name}: password set")
        return 0
    except users.UserError as exc:
        return fail("marketsync cloud", exc)
    finally:
        conn.close()
