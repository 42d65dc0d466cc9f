"""A real cloud for the security tests: `marketsync cloud serve` as its own process (real HTTP, its log in
a file), with users of every role, push accounts, the 1C exchange and an alerts bot token — every secret
it was given kept in `secrets`, so a test can grep the log for each."""

from __future__ import annotations

import json
import re
import secrets as pysecrets
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cloud_sync.access import users
from cloud_sync.schema import open_db
from marketsync.procs import Service, marketsync_argv

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"olga": "owner password 1", "masha": "manager password 1", "petya": "packer password 1"}
ROLES = {"olga": "owner", "masha": "manager", "petya": "packer"}


@dataclass
class Cloud:
    url: str
    log: Path
    db: Path
    service: Service
    secrets: dict[str, str] = field(default_factory=dict)  # what each secret is -> its value

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, follow_redirects=False, **kw)

    def login(self, client: httpx.Client, name: str, password: str | None = None) -> httpx.Response:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return client.post("/login", data={"name": name, "password": PASSWORDS[name] if password is None else password,
                                           "csrf_token": token})

    def session(self, name: str) -> tuple[httpx.Client, str]:
        """A logged-in client and its CSRF token (read from a page)."""
        c = self.client()
        r = self.login(c, name)
        assert r.status_code == 302, r.text
        page = c.get("/orders")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        return c, csrf.group(1) if csrf else ""


def start_cloud(tmp_path: Path, *, onec: dict | None = None, extra_toml: str = "", with_users: bool = True) -> Cloud:
    """Start a cloud over a fresh database in `tmp_path` (with a user of each role unless `with_users` is
    false: a first run); stop it with `cloud.service.stop()`."""
    db = tmp_path / "cloud.sqlite"
    conn = open_db(db)
    for name, pw in PASSWORDS.items() if with_users else ():
        users.add_user(conn, name, pw, ROLES[name])
    conn.close()
    found = {
        "push token mm": "mmpush-" + pysecrets.token_hex(12),
        "push token ym": "ympush-" + pysecrets.token_hex(12),
        "wb api token": "wbtoken-" + pysecrets.token_hex(12),
        "1C password": "onecpass-" + pysecrets.token_hex(8),
        "bot token": "123456789:AA" + pysecrets.token_hex(16),
        **{f"password of {n}": p for n, p in PASSWORDS.items()},
    }
    onec_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in (onec or {}).items())
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(f"""
[cloud]
db_path = "{db}"
host = "127.0.0.1"
port = 0
sync_on_start = false

[link]
enabled = false

[accounts.mm-main]
marketplace = "megamarket"
base_url = "http://127.0.0.1:9"
credentials = {{ token = "mm-api-token-{pysecrets.token_hex(8)}", push_token = "{found['push token mm']}" }}
options = {{ merchant_id = "1001", push_sources = ["127.0.0.0/8"] }}

[accounts.ym-main]
marketplace = "yandex_market"
base_url = "http://127.0.0.1:9"
credentials = {{ "Api-Key" = "ym-api-key-{pysecrets.token_hex(8)}", push_token = "{found['push token ym']}" }}
options = {{ campaign_id = "2002", business_id = "3003", push_sources = ["127.0.0.0/8"] }}

[accounts.wb-main]
marketplace = "wildberries"
base_url = "http://127.0.0.1:9"
credentials = {{ Authorization = "{found['wb api token']}" }}

[alerts]
chat_id = "-100123"
token_env = "MS_TEST_BOT_TOKEN"
base_url = "http://127.0.0.1:9"

[onec]
login = "1c"
password = "{found['1C password']}"
work_dir = "{tmp_path / 'onec-work'}"
{onec_lines}
{extra_toml}
""")
    log = tmp_path / "cloud.log"
    svc = Service("cloud", marketsync_argv("cloud", "serve", "--config", str(cfg), "--log-level", "DEBUG"), log,
                  env={"MS_TEST_BOT_TOKEN": found["bot token"], "PYTHONPATH": str(REPO)}, cwd=str(tmp_path))
    info = svc.start(timeout=90)
    return Cloud(info["url"], log, db, svc, found)
