"""`marketsync link ...`: look at a site link's tables in a cloud or edge database file.

The `marketsync` command runs status and dead-letters through cloud_sync/cli/link.py (cloud.toml found as
the service finds it, texts in its language); here they stay, in English with --db, for callers of this
module, which imports nothing of the cloud.

marketsync link status --db PATH [--json]        queue depths, applied counts, last seen, gaps,
                                                  dead letters with their reasons
marketsync link dead-letters --db PATH [--limit N] [--json]
marketsync link broker-config --out DIR --site ID [--site ID ...] [--hostname NAME ...] [--port 8883]
                              [--cloud-processes N]
                                                  a real broker's TLS files, passwords, ACL of directions,
                                                  and each site's envelope keys (credentials/)
marketsync link rotate-key --credentials DIR --site ID [--activate-in-hours 24] [--grace-days 14]
                                                  new envelope keys of a site in cloud.keys and <site>.keys;
                                                  the old ones still accepted for the grace period
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
from pathlib import Path

from sitelink import keys, store
from sitelink.broker_config import SERVICE_DROPIN, SERVICE_DROPIN_DIR, BrokerError, write_deployment


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marketsync link", description="the cloud<->site link")
    sub = parser.add_subparsers(dest="command", required=True)
    p_status = sub.add_parser("status", help="queue depths, last seen, gaps, dead letters")
    p_status.add_argument("--db", required=True, help="the cloud's or the site's SQLite file")
    p_status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p_dead = sub.add_parser("dead-letters", help="messages that could not be applied, newest first")
    p_dead.add_argument("--db", required=True)
    p_dead.add_argument("--limit", type=int, default=50)
    p_dead.add_argument("--json", action="store_true")
    p_conf = sub.add_parser(
        "broker-config", help="write a real broker's config: TLS, passwords, per-site ACL"
    )
    p_conf.add_argument(
        "--out", required=True, help="directory to write (copy it to /etc/mosquitto/marketsync)"
    )
    p_conf.add_argument("--site", action="append", required=True, help="a site id (repeat per site)")
    p_conf.add_argument("--hostname", action="append", help="the broker's name(s) in its certificate")
    p_conf.add_argument("--port", type=int, default=8883)
    p_conf.add_argument("--cloud-processes", type=int, default=0,
                        help="cloud processes sharing the sites' traffic ([link] share_group): users cloud-1..N")
    p_rot = sub.add_parser("rotate-key", help="new envelope keys for a site (the old ones kept for a grace period)")
    p_rot.add_argument("--credentials", required=True, help="the credentials folder broker-config wrote")
    p_rot.add_argument("--site", required=True)
    p_rot.add_argument("--activate-in-hours", type=float, default=24.0,
                       help="when senders switch to the new keys (time to install both files)")
    p_rot.add_argument("--grace-days", type=float, default=14.0,
                       help="how long after the switch a message signed with the old key is still accepted")
    args = parser.parse_args(argv)
    if args.command == "broker-config":
        return write_broker_config(args)
    if args.command == "rotate-key":
        return rotate_key(args)

    path = Path(args.db)
    if not path.exists():
        print(f"marketsync link: no database at {path}", file=sys.stderr)
        return 2
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='link_outbox'").fetchone():
            print(
                f"marketsync link: {path} has no site-link tables (has the link ever run on it?)",
                file=sys.stderr,
            )
            return 2
        if args.command == "status":
            st = store.status(conn)
            print(json.dumps(st, indent=2, ensure_ascii=False) if args.json else render_status(st))
        else:
            rows = store.list_dead_letters(conn, limit=args.limit)
            print(json.dumps(rows, indent=2, ensure_ascii=False) if args.json else render_dead_letters(rows))
    finally:
        conn.close()
    return 0


def write_broker_config(args: argparse.Namespace) -> int:
    try:
        passwords = write_deployment(
            args.out, args.site, hostnames=tuple(args.hostname or ["localhost"]), port=args.port,
            cloud_processes=args.cloud_processes,
        )
    except BrokerError as exc:
        print(f"marketsync link broker-config: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"wrote {out}/marketsync.conf, ca.crt, server.crt, server.key, passwd, acl and {SERVICE_DROPIN}"
          f" (for {SERVICE_DROPIN_DIR}/: the open-files limit of a broker with many sites)")
    print(
        f"passwords for {', '.join(sorted(passwords))} are in {out}/credentials/ (mode 600), shown nowhere else"
    )
    print(f"envelope keys: {out}/credentials/<site>.keys to each site, cloud.keys to the cloud (mode 600)")
    print("keep ca.key off the broker box; see systemd/mosquitto/README.md for the install steps")
    return 0


def rotate_key(args: argparse.Namespace) -> int:
    if args.activate_in_hours < 0 or args.grace_days < 0:
        print("marketsync link rotate-key: hours and days must not be negative", file=sys.stderr)
        return 2
    try:
        fresh = keys.rotate(args.credentials, args.site, activate_in=dt.timedelta(hours=args.activate_in_hours),
                            grace=dt.timedelta(days=args.grace_days))
    except keys.KeyFileError as exc:
        print(f"marketsync link rotate-key: {exc}", file=sys.stderr)
        return 2
    start = fresh[0].active_from.strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"new keys of {args.site}: {', '.join(f'{k.direction} {k.kid}' for k in fresh)}, used from {start}")
    print(f"install {args.credentials}/{args.site}.keys at the site and cloud.keys at the cloud before then;"
          " both are read again while running")
    return 0


def render_status(st: dict) -> str:
    lines = [f"outbox: {st['outbox_total']} message(s) waiting for acknowledgement"]
    for peer, o in sorted(st["outbox"].items()):
        oldest = f", oldest since {o['oldest_at']}" if o.get("oldest_at") else ""
        lines.append(f"  to/from {peer}: {o['depth']} waiting{oldest}")
    lines.append(f"inbox: {st['inbox_applied']} message(s) received and applied")
    for peer, i in sorted(st["inbound"].items()):
        lines.append(
            f"  from {peer}: {i['applied']} applied, next seq {i['next_seq']}, last at {i['last_message_at']}"
        )
    if st["peers"]:
        lines.append("peers:")
        for peer, p in sorted(st["peers"].items()):
            state = p["state"] or "has not reported its state yet"
            since = f" (since {p['state_at']})" if p.get("state_at") else ""
            lines.append(f"  {peer}: {state}{since}, last heard {p['last_seen'] or 'never'}")
    else:
        lines.append("peers: none has been heard from yet")
    if st["gaps"]:
        lines.append(f"gaps (messages that never arrived, given up on): {len(st['gaps'])}")
        for g in st["gaps"][:10]:
            lines.append(f"  {g['peer']}: seq {g['from_seq']}..{g['to_seq']} at {g['detected_at']}")
    lines.append(f"dead letters: {st['dead_letters']}")
    for d in st["recent_dead_letters"]:
        lines.append(
            f"  #{d['n']} {d['at']} {d['type'] or '?'} from {d['peer'] or '?'} seq {d['seq']}: {d['reason']}"
        )
    return "\n".join(lines)


def render_dead_letters(rows: list[dict]) -> str:
    if not rows:
        return "no dead letters"
    out = []
    for d in rows:
        out.append(
            f"#{d['n']} {d['at']} topic {d['topic']} id {d['id'] or '-'} seq {d['seq']} type {d['type'] or '-'}"
        )
        out.append(f"    reason:  {d['reason']}")
        out.append(f"    payload: {d['payload'][:200]}")
    return "\n".join(out)
