"""An installation of several sellers, real from end to end, for the isolation tests: a secure Mosquitto
configured with the ACL blocks `tenant add` wrote (TLS, a password per user, each seller's users only in
its own tree), two sellers `alfa` and `beta` made by `cloud_sync.tenants.add` (what `marketsync tenant add`
runs), each with a Wildberries account on its own sandbox process, beside the main seller, all served by
one `TenantHost` (what `cloud serve` runs with [tenants]) over real HTTP.

Each seller's data carries markers no other seller's can: its account is `wb-<id>` (every card and order
row names it) and its site and legal name hold `<ID>-SECRET`. Each seller has an order from its own sandbox,
polled by its own jobs, before the tests begin.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_sync import tenants
from cloud_sync.access import users
from cloud_sync.config import load_config
from cloud_sync.db import connect
from cloud_sync.schema import open_db
from cloud_sync.service.tenants import TenantHost
from marketsync.broker import Broker, free_port
from marketsync.procs import Service, marketsync_argv

B_MARKERS = ("wb-beta", "BETA-SECRET")
A_MARKERS = ("wb-alfa", "ALFA-SECRET")


@dataclass
class Seller:
    id: str
    admin: str
    password: str
    account: str
    sandbox: str
    folder: Path
    token: str = ""
    sid: str = ""  # the session cookie's value once logged in
    csrf: str = ""
    order_key: str = ""

    @property
    def root(self) -> str:
        return f"/t/{self.id}"


@dataclass
class World:
    host: TenantHost
    url: str
    broker: Broker
    sellers: dict[str, Seller]
    main_token: str
    work: Path
    sandboxes: list[Service] = field(default_factory=list)

    def db(self, tenant: str) -> str:
        return self.host.services[tenant].db_path if tenant else self.host.main.db_path


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def login(url: str, root: str, name: str, password: str) -> tuple[str, str]:
    """Log in through the login form under `root`; the session cookie's value and the CSRF token a page
    of that seller gives."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as web:
        web.get(f"{root}/login").raise_for_status()
        token = web.cookies.get("ms_login_csrf")
        r = web.post(f"{root}/login", data={"name": name, "password": password, "csrf_token": token})
        assert r.status_code in (302, 303), r.text[:300]
        assert r.headers["location"].startswith(f"{root}/"), r.headers["location"]
        sid = web.cookies.get("ms_session")
        page = web.get(f"{root}/orders")
        assert page.status_code == 200, page.text[:300]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    return sid, csrf


def store_snapshot(path: str, skip: set[str] = frozenset()) -> dict[str, str]:  # type: ignore[assignment]
    """Every table of a store (either engine) -> a digest of its rows."""
    conn = connect(path)
    try:
        names = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                       if not r[0].startswith("sqlite_"))
        out = {}
        for name in names:
            if name in skip:
                continue
            rows = sorted(repr(tuple(r)) for r in conn.execute(f'SELECT * FROM "{name}"').fetchall())
            out[name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return out
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _start_sandbox(work: Path, seed: int) -> tuple[Service, dict[str, Any]]:
    svc = Service(f"sandbox-wb-{seed}", marketsync_argv("sandbox", "serve", "wildberries", "--port", "0", "--seed",
                                                        str(seed)), work / f"sandbox-{seed}.log")
    return svc, svc.start(timeout=60)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("installation")
    started: list[Service] = []
    host: TenantHost | None = None
    broker: Broker | None = None
    try:
        sandboxes = {}
        for tenant, seed in (("alfa", 11), ("beta", 12)):
            svc, info = _start_sandbox(work, seed)
            started.append(svc)
            sandboxes[tenant] = info
        main_file = work / "cloud.toml"
        main_file.write_text('[cloud]\ndb_path = "main/cloud.sqlite"\nport = 0\nsync_wait_s = 10.0\n'
                             '[tenants]\ndir = "tenants"\n', encoding="utf-8")
        main = load_config(main_file)
        sellers: dict[str, Seller] = {}
        acl, passwords = "", {}
        for tenant in ("alfa", "beta"):
            made = tenants.add(main, tenant, name=f"{tenant.upper()}-SECRET ООО", admin=f"owner-{tenant}")
            info = sandboxes[tenant]
            account = f"wb-{tenant}"
            conf = made.tenant.folder / "cloud.toml"
            text = conf.read_text("utf-8").replace('name = "site-1"', f'name = "Склад {tenant.upper()}-SECRET"')
            text += (f"\n[jobs]\norders_poll_s = 0.5\nstatus_refresh_s = 5.0\n\n[accounts.{account}]\n"
                     f'marketplace = "wildberries"\nbase_url = {_toml(info["url"])}\n'
                     f"credentials = {_toml(info['credentials'])}\n"
                     f'default_warehouse = "site-1"\ntime_scale = 20.0\n')
            conf.write_text(text, "utf-8")
            acl += (made.broker_dir / "acl").read_text() + "\n"
            creds = made.broker_dir / "credentials"
            for user in made.broker_users.values():
                passwords[user] = (creds / f"{user}.password").read_text().strip()
            sellers[tenant] = Seller(tenant, made.admin, made.password, account, info["url"], made.tenant.folder)
        port = free_port()
        broker = Broker(port=port, workdir=work / "broker", secure=True, sites=["site-1"], passwords=passwords,
                        extra_acl=acl).start()
        main_file.write_text(main_file.read_text("utf-8") + (
            f'[link]\nhost = "127.0.0.1"\nport = {port}\ntls_ca = {_toml(broker.ca_file)}\nusername = "cloud"\n'
            f'password = {_toml(broker.passwords["cloud"])}\nkeys_file = {_toml(broker.keys_file("cloud"))}\n'),
            encoding="utf-8")
        main = load_config(main_file)
        conn = open_db(main.db_path)
        try:
            users.add_user(conn, "owner-main", "main-owner-password-1", "owner")
            main_token = users.new_token(conn, "owner-main")
        finally:
            conn.close()
        host = TenantHost(main)
        url = host.start()
        world = World(host, url, broker, sellers, main_token, work, started)
        for s in sellers.values():
            c = connect(world.db(s.id))
            try:
                s.token = users.new_token(c, s.admin)
            finally:
                c.close()
            s.sid, s.csrf = login(url, s.root, s.admin, s.password)
            httpx.post(f"{s.sandbox}/_sandbox/orders", json={"count": 1}, timeout=10).raise_for_status()
        for s in sellers.values():
            got = wait_for(f"seller {s.id}'s order polled by its jobs", lambda s=s: httpx.get(
                f"{url}{s.root}/api/orders", headers={"Authorization": f"Bearer {s.token}"}, timeout=10).json(), 60)
            s.order_key = got[0]["key"]
            assert s.order_key.startswith(f"{s.account}:"), got
        yield world
    finally:
        if host is not None:
            host.stop()
        if broker is not None:
            broker.stop()
        for svc in started:
            svc.stop()


SKIP_METHODS = {"HEAD", "OPTIONS"}
_ARG = re.compile(r"<(?:([a-z]+)(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")


def routes(world: World, tenant: str, values: dict[str, str]) -> list[tuple[str, str, str]]:
    """Every (method, path, rule) of a seller's app ("": the main seller's), read from its url_map (nothing
    listed by hand): each argument filled from `values` by name (a real key of the seller asked about), else
    a placeholder."""
    app = world.host._apps[tenant] if tenant else world.host._main_app
    assert app is not None
    out = []
    for rule in app.url_map.iter_rules():
        def fill(m: re.Match[str]) -> str:
            conv, name = m.group(1), m.group(2)
            return values.get(name, "1" if conv in ("int", "float") else "x")
        path = _ARG.sub(fill, rule.rule)
        for method in sorted((rule.methods or set()) - SKIP_METHODS):
            out.append((method, path, rule.rule))
    return out


def rule_values(seller: Seller) -> dict[str, str]:
    """Real values of a seller's own records for the rules' arguments (an order key, its account...)."""
    native = seller.order_key.split(":", 1)[1]
    return {"key": seller.order_key, "account": seller.account, "order_key": seller.order_key,
            "native_id": native, "order_id": native, "marketplace": "wildberries", "mp": "wildberries"}
