"""`marketsync link ...`: the site link's tables in words, in the `[ui] language` of cloud.toml.

  marketsync link status [--config CLOUD_TOML] [--db PATH] [--json]
      queue depths, applied counts, each side's state and when it was last heard, gaps, dead letters
  marketsync link dead-letters [--config CLOUD_TOML] [--db PATH] [--limit N] [--json]
      the messages that could not be applied, newest first, with their reasons
  marketsync link bridge-config --region NAME --site ID [--site ID ...] --central-host HOST
                                [--central-port 8883] [--hostname NAME ...] [--port 8883] --out DIR
      a regional broker for those sites, bridged to the central one (sitelink.bridge_config): its TLS
      files, passwords and ACL, the bridge section, and the lines the central broker adds for the bridge

Without --db the database is cloud.toml's store (`[cloud] db_path`, or PostgreSQL's `[db] url`), the config
found as the service finds it (--config, else $MARKETSYNC_CONFIG, else ./config/cloud.toml, else
/etc/marketsync/cloud.toml); every error names the config read. The store is only read (`cloud_sync.db.
connect_readonly`: SQLite's file `mode=ro`, PostgreSQL's transactions read-only). An edge box gives its own database with --db (`[site] db_path` of edge.toml).
`--json` prints the tables' own fields (sitelink.store), unchanged. The other subcommands
(broker-config, rotate-key) are sitelink.cli's.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from cloud_sync import db
from cloud_sync.cli import fail, load
from cloud_sync.config import ConfigError
from cloud_sync.i18n import N_, number, translations, when
from sitelink import cli as link_cli
from sitelink import store
from sitelink.bridge_config import bridge_user, write_bridge
from sitelink.broker_config import DEPLOY_DIR, SERVICE_DROPIN, SERVICE_DROPIN_DIR, BrokerError

PROG = "marketsync link"
OWN = ("status", "dead-letters", "bridge-config")
# a side's retained state (sitelink.link: the last will says "offline"), in words
STATES = {"online": N_("online"), "offline": N_("offline")}


class Words:
    """The texts of one run: gettext/ngettext of the language, numbers and moments written for it."""

    def __init__(self, lang: str, tz: str) -> None:
        self.lang, self.tz = lang, tz
        self._tr = translations(lang)

    def __call__(self, text: str, **values: Any) -> str:
        out = self._tr.gettext(text)
        return out % values if values else out

    def n(self, singular: str, plural: str, count: int, **values: Any) -> str:
        return self._tr.ngettext(singular, plural, count) % {"n": self.num(count), **values}

    def num(self, value: object) -> str:
        return number(value, self.lang)

    def at(self, value: object) -> str:
        return when(value, self.lang, self.tz)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in OWN:
        return link_cli.main(argv)  # broker-config, rotate-key, --help: the link's own
    p = argparse.ArgumentParser(prog=PROG, description="the cloud<->site link")
    sub = p.add_subparsers(dest="command", required=True)
    br = sub.add_parser("bridge-config", help="a regional broker for some sites, bridged to the central one")
    br.add_argument("--region", required=True, help="the region's name (the bridge's user: bridge-<region>)")
    br.add_argument("--site", action="append", required=True, help="a site of the region (repeat per site)")
    br.add_argument("--central-host", required=True, help="the central broker's name (in its certificate)")
    br.add_argument("--central-port", type=int, default=8883)
    br.add_argument("--hostname", action="append", help="the regional broker's name(s) in its certificate")
    br.add_argument("--port", type=int, default=8883, help="the regional broker's port")
    br.add_argument("--out", required=True, help="the directory to write")
    br.add_argument("--config", help="cloud.toml, for its [ui] language (else found as the service finds it)")
    st = sub.add_parser("status", help="queue depths, last seen, gaps, dead letters")
    dl = sub.add_parser("dead-letters", help="messages that could not be applied, newest first")
    dl.add_argument("--limit", type=int, default=50)
    for sp in (st, dl):
        sp.add_argument("--config", help="cloud.toml (else $MARKETSYNC_CONFIG, ./config/cloud.toml,"
                                         " /etc/marketsync/cloud.toml)")
        sp.add_argument("--db", help="the cloud's or the site's SQLite file (else [cloud] db_path)")
        sp.add_argument("--json", action="store_true", help="one JSON document instead of text")
    args = p.parse_args(argv)
    try:
        cfg = load(args)  # --db, when given, replaces [cloud] db_path
    except ConfigError as exc:
        return fail(PROG, exc)
    w = Words(cfg.ui.language, cfg.ui.timezone)
    if args.command == "bridge-config":
        return bridge_config(args, w)
    path = cfg.db_path  # a file, or the PostgreSQL store's URL (shown without its password)
    try:
        conn = db.connect_readonly(path)
    except FileNotFoundError:
        return fail(PROG, w("no database at %(path)s", path=path))
    except sqlite3.Error as exc:
        return fail(PROG, w("cannot read %(path)s: %(error)s", path=path, error=exc))
    try:
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='link_outbox'").fetchone():
                return fail(PROG, w("%(path)s has no site link tables (has the link ever run on it?)", path=path))
            if args.command == "status":
                found: Any = store.status(conn)
                text = render_status(found, w)
            else:
                found = store.list_dead_letters(conn, limit=args.limit)
                text = render_dead_letters(found, w)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return fail(PROG, w("cannot read %(path)s: %(error)s", path=path, error=exc))
    print(json.dumps(found, indent=2, ensure_ascii=False) if args.json else text)
    return 0


def bridge_config(args: argparse.Namespace, w: Words) -> int:
    """`link bridge-config`: write a region's files and say where each one goes."""
    try:
        write_bridge(args.out, args.region, args.site, central_host=args.central_host,
                     central_port=args.central_port, hostnames=tuple(args.hostname or ["localhost"]),
                     port=args.port)
    except (BrokerError, OSError) as exc:
        return fail(PROG, w("the bridge was not written: %(error)s", error=exc))
    out, user = Path(args.out), bridge_user(args.region)
    print(w.n("region %(region)s: %(n)s site, its broker's files are in %(path)s",
              "region %(region)s: %(n)s sites, its broker's files are in %(path)s", len(args.site),
              region=args.region, path=out / "regional"))
    print(w("on the regional broker: install them in %(dir)s as broker-config's, the bridge section"
            " conf.d/zz-marketsync-bridge.conf in /etc/mosquitto/conf.d/ (mode 640), and the central broker's"
            " ca.crt as %(dir)s/central-ca.crt", dir=DEPLOY_DIR))
    print(w("and %(dropin)s in %(unit_dir)s/ (the broker's open-files limit: without it a broker takes about a"
            " thousand sites), then systemctl daemon-reload", dropin=out / "regional" / SERVICE_DROPIN,
            unit_dir=SERVICE_DROPIN_DIR))
    print(w("on the central broker: append %(acl)s to its acl and %(passwd)s to its passwd, then restart it",
            acl=out / "central" / f"acl-{user}", passwd=out / "central" / f"passwd-{user}"))
    print(w("the passwords of the sites and of the bridge are in %(path)s (mode 600) and nowhere else; the sites"
            " keep the envelope keys broker-config made", path=out / "credentials"))
    return 0


def render_status(st: dict, w: Words) -> str:
    """`link status` in words: every missing value as words, never "None"."""
    lines = [w.n("outbox: %(n)s message waiting for acknowledgement",
                 "outbox: %(n)s messages waiting for acknowledgement", st["outbox_total"])]
    for peer, o in sorted(st["outbox"].items()):
        if o.get("oldest_at"):
            lines.append("  " + w.n("%(peer)s: %(n)s waiting, the oldest since %(at)s",
                                    "%(peer)s: %(n)s waiting, the oldest since %(at)s", o["depth"],
                                    peer=peer, at=w.at(o["oldest_at"])))
        else:
            lines.append("  " + w.n("%(peer)s: %(n)s waiting", "%(peer)s: %(n)s waiting", o["depth"], peer=peer))
    lines.append(w.n("inbox: %(n)s message received and applied", "inbox: %(n)s messages received and applied",
                     st["inbox_applied"]))
    for peer, i in sorted(st["inbound"].items()):
        values = {"peer": peer, "n": w.num(i["applied"]), "seq": i["next_seq"]}
        if i.get("last_message_at"):
            lines.append("  " + w("from %(peer)s: %(n)s applied, next number %(seq)s, the last one %(at)s",
                                  at=w.at(i["last_message_at"]), **values))
        else:
            lines.append("  " + w("from %(peer)s: %(n)s applied, next number %(seq)s", **values))
    if st["peers"]:
        lines.append(w("the other side:"))
        for peer, p in sorted(st["peers"].items()):
            heard = (w("last heard %(at)s", at=w.at(p["last_seen"])) if p.get("last_seen")
                     else w("never heard from"))
            if not p.get("state"):
                state = w("has not reported its state yet")
            elif p.get("state_at"):
                state = w("%(state)s since %(at)s", state=_state(p["state"], w), at=w.at(p["state_at"]))
            else:
                state = _state(p["state"], w)
            lines.append("  " + w("%(peer)s: %(state)s, %(heard)s", peer=peer, state=state, heard=heard))
    else:
        lines.append(w("the other side: not heard from yet"))
    if st["gaps"]:
        lines.append(w.n("%(n)s gap: messages that never arrived and are given up on",
                         "%(n)s gaps: messages that never arrived and are given up on", len(st["gaps"])))
        for g in st["gaps"][:10]:
            lines.append("  " + w("%(peer)s: numbers %(first)s to %(last)s, noticed %(at)s", peer=g["peer"],
                                  first=g["from_seq"], last=g["to_seq"], at=w.at(g["detected_at"])))
    lines.append(w.n("%(n)s message could not be applied", "%(n)s messages could not be applied",
                     st["dead_letters"]))
    for d in st["recent_dead_letters"]:
        lines.append("  " + w("#%(n)s %(at)s %(type)s from %(peer)s, number %(seq)s: %(reason)s", n=d["n"],
                              at=w.at(d["at"]), type=d["type"] or "?", peer=d["peer"] or "?",
                              seq=d["seq"] if d["seq"] is not None else "?", reason=d["reason"]))
    return "\n".join(lines)


def _state(state: str, w: Words) -> str:
    """A side's state in words; one this version does not know, as the side sent it."""
    return w(STATES[state]) if state in STATES else state


def render_dead_letters(rows: list[dict], w: Words) -> str:
    if not rows:
        return w("no messages that could not be applied")
    out = []
    for d in rows:
        out.append(w("#%(n)s %(at)s topic %(topic)s, id %(id)s, number %(seq)s, type %(type)s", n=d["n"],
                     at=w.at(d["at"]), topic=d["topic"], id=d["id"] or "-",
                     seq=d["seq"] if d["seq"] is not None else "-", type=d["type"] or "-"))
        out.append("    " + w("reason: %(reason)s", reason=d["reason"]))
        out.append("    " + w("payload: %(payload)s", payload=d["payload"][:200]))
    return "\n".join(out)
