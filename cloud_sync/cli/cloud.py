"""The cloud's commands: `marketsync cloud serve`, `marketsync cloud push-urls` (the URL each pushing
account's marketplace is to push to, with its token: the operator's own terminal, never a log),
`marketsync sync cards|stocks|prices|orders|reports`, `marketsync stock why ITEM --account A` (and
`stock holds` / `stock confirm HOLD`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from cloud_sync.access import secrets
from cloud_sync.cli import fail, load, money, t
from cloud_sync.cli.users import main as users_main
from cloud_sync.config import ConfigError
from cloud_sync.i18n import domain_text, service_when, translations
from cloud_sync.orders import pushes
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from cloud_sync.service.cloud import CloudService
from cloud_sync.service.tenants import TenantHost
from cloud_sync.stock import ledger
from cloud_sync.stock import push as stock_push
from cloud_sync.stock import why as stock_why
from marketplaces import http as mp_http
from marketplaces import profiles
from sitelink.service_manager import notify, watchdog_interval


def _config(args: argparse.Namespace):
    return load(args)  # found as the service finds it: --config, $MARKETSYNC_CONFIG, ./config, /etc


def cloud_main(argv: list[str]) -> int:
    if argv and argv[0] in ("user", "token"):
        return users_main(argv)
    p = argparse.ArgumentParser(prog="marketsync cloud", description="run the central service")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("user", help="users: user add NAME --role owner|manager|packer, user password, user list")
    sub.add_parser("token", help="token NAME: an API token for a user (shown once)")
    serve = sub.add_parser("serve", help="serve the web app, the site link, the stock pusher and the jobs")
    serve.add_argument("--config", help="cloud.toml (else $MARKETSYNC_CONFIG, ./config/cloud.toml, /etc/marketsync/cloud.toml)")
    serve.add_argument("--db", help="the tenant database file (overrides [cloud] db_path)")
    serve.add_argument("--port", type=int, help="HTTP port (0: a free one)")
    serve.add_argument("--host", help="HTTP address")
    serve.add_argument("--instance", default=os.environ.get("MARKETSYNC_INSTANCE", ""),
                       help="this process's number among several (systemd's %%i; [link] member_username)")
    serve.add_argument("--log-level", default="INFO")
    urls = sub.add_parser("push-urls", help="the URL to enter in the cabinet of each marketplace that pushes orders"
                                            " (Yandex.Market, Megamarket, Ozon), push token included")
    urls.add_argument("--config", help="cloud.toml (else $MARKETSYNC_CONFIG, ./config/cloud.toml, /etc/marketsync/cloud.toml)")
    urls.add_argument("--db", help="the tenant database file (overrides [cloud] db_path)")
    args = p.parse_args(argv)
    if args.cmd == "push-urls":
        return push_urls(args)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise (and URLs only)
    try:
        cfg = _config(args)
    except ConfigError as exc:
        return fail("marketsync cloud", exc)
    if args.port is not None:
        cfg.port = args.port
    if args.host:
        cfg.host = args.host
    # [tenants]: the main seller and every seller of the registry on one server (else one seller, as ever)
    service: CloudService | TenantHost = (TenantHost(cfg, instance=args.instance) if cfg.tenants_dir
                                          else CloudService(cfg, instance=args.instance))
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: object) -> None:
        stop.set()
        mp_http.stop_waiting()  # a call waiting to retry gives up now: the stop takes no backoff

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        try:
            url = service.start()
        except ConfigError as exc:  # a seller's cloud.toml (the main one was read above)
            return fail("marketsync cloud", exc)
        said = {"role": "cloud", "url": url, "db": str(service.db_path),  # str: a [db] url without its password
                "accounts": sorted(service.adapters)}
        if isinstance(service, TenantHost):
            said["tenants"] = service.tenant_ids()
        print(json.dumps(said), flush=True)
        notify(f"READY=1\nSTATUS=serving {url}")
        while not stop.wait(watchdog_interval()):
            if service.healthy():
                notify("WATCHDOG=1")
        notify("STOPPING=1")
    finally:
        service.stop()
    return 0


def push_urls(args: argparse.Namespace) -> int:
    """Print, per account whose marketplace pushes, the URL(s) to enter in its cabinet and where. The push
    token is in them (that is the point; this is the operator's terminal, asked for) and goes to no log."""
    prog = "marketsync cloud push-urls"
    try:
        cfg = _config(args)
    except ConfigError as exc:
        return fail(prog, exc)
    conn = open_db(cfg.db_path)
    try:
        secrets.apply_to_config(conn, cfg, waiting=[])  # a push token stored in Settings counts, as in the service
        last = pushes.last_received(conn)
        pings = pushes.last_pings(conn)
    except secrets.SecretError as exc:
        return fail(prog, exc)
    finally:
        conn.close()
    doors = pushes.push_doors(cfg, last, masked=False, pings=pings)
    if not doors:
        print(t("no account of this config has a marketplace that pushes orders (Yandex.Market, Megamarket, Ozon)"))
        return 0
    if not cfg.public_url:
        print(t("warning: [cloud] public_url is not set in %(file)s: the addresses below use %(base)s, a local"
                " address no marketplace can reach. Set public_url to the cloud's address as the internet reaches"
                " it (e.g. \"https://seller.example.ru\").", file=cfg.config_file or "cloud.toml",
                base=pushes.cloud_base(cfg)), file=sys.stderr)
    for door in doors:
        known = profiles().get(door.marketplace)
        print(f"{door.account} ({known.title if known else door.marketplace}):")
        for url in door.urls:
            print(f"  {url}")
        if door.cabinet:  # the profile's own words, translated here (gettext of "" is the catalog's header)
            print("  " + t("where: %(place)s", place=t(door.cabinet)))
        print("  " + (t("last notification: %(when)s", when=service_when(door.last_received))
                      if door.last_received else t("no notifications yet")))
        print("  " + (t("last connection check: %(when)s", when=service_when(door.last_ping))
                      if door.last_ping else t("no connection check yet")))
        if not door.token_set:
            print(t("warning: account %(account)s has no push token, so every push to it is refused. Set one:"
                    " on the Settings page (credential push_token, with credentials_secret in the account's"
                    " config) or in its secrets file (credentials_file: push_token = \"...\"), then run this"
                    " command again.", account=door.account), file=sys.stderr)
    return 0


def _progress_factory(enabled: bool) -> Callable:
    if not enabled:
        return sync.no_progress
    from tqdm import tqdm  # lazy: the progress bar only on a terminal

    bars = []

    def make(label: str, total: int | None) -> Callable[[int], None]:
        bar = tqdm(total=total, desc=label, unit="it", file=sys.stderr, leave=True)
        bars.append(bar)

        def tick(n: int) -> None:
            bar.update(n)
            if total is not None and bar.n >= total:
                bar.close()
        return tick
    return make


def sync_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="marketsync sync", description="sync with the marketplaces")
    p.add_argument("what", choices=["cards", "stocks", "prices", "orders", "reports"])
    p.add_argument("--config")
    p.add_argument("--db")
    p.add_argument("--account", action="append", help="only this account (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    args, rest = p.parse_known_args(argv)
    try:
        cfg = _config(args)
    except ConfigError as exc:
        return fail("marketsync sync", exc)
    if args.what in ("prices", "reports"):
        return _delegate(args.what, argv)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.account:
        unknown = set(args.account) - set(cfg.accounts)
        if unknown:
            return fail("marketsync sync", t("unknown account(s): %(accounts)s; configured: %(known)s",
                                              accounts=", ".join(sorted(unknown)),
                                              known=", ".join(sorted(cfg.accounts)) or t("none")))
    conn = open_db(cfg.db_path)
    report = accounts.SyncReport()
    try:  # as the running service does: what was entered in Settings counts here too
        adapters, _ = accounts.open_with_settings(conn, cfg, report, only=args.account)
    except secrets.SecretError as exc:
        return fail("marketsync sync", exc)
    progress = _progress_factory(not args.no_progress and sys.stderr.isatty())
    run = {"cards": sync.sync_cards, "stocks": sync.sync_stocks, "orders": sync.sync_orders}[args.what]
    result = run(conn, cfg, adapters, progress=progress)
    for line in result.lines:
        print(line)
    if not result.lines and not report.errors and not result.errors:
        print(t("nothing to sync: no account is configured") if not cfg.accounts else t("done, nothing changed"))
    for err in report.errors + result.errors:  # accounts that could not be opened, then what failed
        print(f"error: {err}", file=sys.stderr)
    return 1 if report.errors or result.errors else 0


def _delegate(what: str, argv: list[str]) -> int:
    """`sync prices` and `sync reports` take their own arguments (cloud_sync/cli/money.py)."""
    rest = list(argv)
    rest.remove(what)
    return int((money.sync_prices if what == "prices" else money.sync_reports)(rest) or 0)


def stock_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="marketsync stock", description="stock ledger questions")
    sub = p.add_subparsers(dest="cmd", required=True)
    why = sub.add_parser("why", help="explain how the numbers published for an item on an account were computed")
    why.add_argument("item", help="1C item id or article")
    why.add_argument("--account", required=True)
    why.add_argument("--json", action="store_true")
    holds = sub.add_parser("holds", help="stock pushes held by the zero guard")
    confirm = sub.add_parser("confirm", help="confirm a held stock push (it is sent by the running service)")
    confirm.add_argument("hold", type=int)
    confirm.add_argument("--by", default="cli")
    for sp in (why, holds, confirm):
        sp.add_argument("--config", help="cloud.toml (else $MARKETSYNC_CONFIG, ./config/cloud.toml, /etc)")
        sp.add_argument("--db")
    args = p.parse_args(argv)
    try:
        cfg = _config(args)
    except ConfigError as exc:
        return fail("marketsync stock", exc)
    conn = open_db(cfg.db_path)
    if args.cmd == "why":
        try:
            ex = stock_why.why(conn, cfg, args.item, args.account)
        except ledger.StockError as exc:
            if args.account not in cfg.accounts:
                return fail("marketsync stock why", t("unknown account %(account)s; configured: %(known)s",
                                                      account=repr(args.account),
                                                      known=", ".join(sorted(cfg.accounts)) or t("none")))
            return fail("marketsync stock why", exc)
        if args.json:
            print(json.dumps({"item_id": ex.item_id, "account": ex.account, "published": ex.published,
                              "lines": ex.lines}, ensure_ascii=False))
        else:
            print(ex.text())
        return 0
    if args.cmd == "holds":
        held = stock_push.holds(conn)
        for h in held:
            print(t("hold %(id)s %(account)s: %(reason)s (%(n)s pushes held); confirm: marketsync stock confirm %(id)s",
                    id=h["id"], account=h["account"], reason=domain_text(h["reason"], translations(cfg.ui.language).gettext),
                    n=h["held"]))
        if not held:
            print(t("nothing is held: the zero guard holds no stock push (%(db)s)", db=cfg.db_path))
        return 0
    try:
        n = stock_push.confirm_hold(conn, args.hold, by=args.by)
    except ValueError as exc:
        return fail("marketsync stock confirm", exc)
    print(t("released %(n)s held pushes; the running service sends them", n=n))
    return 0
