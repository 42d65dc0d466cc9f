"""Secrets at rest: marketplace credentials and the Telegram bot token, encrypted in the tenant database
with a key file readable by the service alone.

Owns the table `stored_secrets` (name -> Fernet token (AES-128-CBC + HMAC-SHA256, `cryptography`), the
time it was set, and the names of the fields it holds — never a value). The key lives in a file of its
own (`[secrets] key_file` in cloud.toml, default `secret.key` beside the database), created with mode
0600 on first use; a key file that its group or others may read is refused.

Entered through Settings (write-only fields: the page shows which fields are set and when, never a
value) or `put`. An account's config may use them: `[accounts.X] credentials_secret = "account/X"`
merges the stored fields into its credentials when the service starts (`apply_to_config`; an account
whose secret is not stored yet waits, unopened, until it is entered in Settings); the bot
token is the secret `telegram/bot_token` (used when [alerts] names no token_env/token_file).
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from cloud_sync.config import CloudConfig
from cloud_sync.config_sections import AlertsConfig
from cloud_sync.db import transaction

MIGRATIONS = [
    """
    CREATE TABLE stored_secrets (
        name TEXT PRIMARY KEY,
        ciphertext BLOB NOT NULL,
        fields TEXT NOT NULL DEFAULT '[]',
        updated_ts REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE stored_settings (
        kind TEXT NOT NULL,              -- status_map | endpoint
        scope TEXT NOT NULL,             -- the marketplace (status_map) or the account (endpoint)
        key TEXT NOT NULL,               -- the native status, or the endpoint name
        value TEXT NOT NULL,             -- the unified status, or "METHOD /path"
        updated_ts REAL NOT NULL,
        PRIMARY KEY (kind, scope, key)
    ) WITHOUT ROWID;
    """,
]

BOT_TOKEN = "telegram/bot_token"
BOT_TOKEN_ENV = "MARKETSYNC_STORED_BOT_TOKEN"


class SecretError(ValueError):
    """The key file or a stored secret cannot be used; the message never holds a secret's value."""


def key_file_for(cfg: CloudConfig) -> Path:
    """`[secrets] key_file`, else secret.key beside the database."""
    if cfg.secrets.key_file:
        return Path(cfg.secrets.key_file)
    return Path(cfg.db_path).parent / "secret.key"


def load_key(path: str | Path, *, create: bool = True) -> bytes:
    """The Fernet key in `path` (made, mode 0600, when missing and `create`)."""
    p = Path(path)
    if not p.exists():
        if not create:
            raise SecretError(f"the secrets key file {str(p)!r} does not exist")
        _create_key(p)
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"the secrets key file {str(p)!r} may be read by others (mode {oct(mode & 0o777)});"
                          " chmod 600 it")
    key = p.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise SecretError(f"the secrets key file {str(p)!r} does not hold a valid key") from None
    return key


def _create_key(p: Path) -> None:
    """Write a new key to `p` whole or not at all: several cloud processes starting at once on one store
    end up with the one key the first of them made (written aside, then linked in; a link never replaces
    a file another process linked first), never one key each, nor a half-written file."""
    p.parent.mkdir(parents=True, exist_ok=True)
    aside = p.with_name(f".{p.name}.{os.getpid()}.{pysecrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(aside, p)
        except FileExistsError:
            pass  # another process made it first: theirs is the key
    finally:
        aside.unlink(missing_ok=True)


class SecretStore:
    """Encrypt/decrypt with one key; the caller gives the connection (its own transaction rules)."""

    def __init__(self, key_file: str | Path, *, create: bool = True) -> None:
        self.key_file = Path(key_file)
        self._fernet = Fernet(load_key(key_file, create=create))

    def __repr__(self) -> str:
        return f"SecretStore(key_file={str(self.key_file)!r})"

    def put(self, conn: sqlite3.Connection, name: str, value: dict[str, str] | str, *, merge: bool = True) -> None:
        """Store `value` (a dict of fields, or one string) under `name`; with `merge`, fields not given
        keep their stored value (a write-only form leaves empty fields alone)."""
        if not name or len(name) > 120:
            raise SecretError("a secret needs a name of 1-120 characters")
        fields: dict[str, str] = {"value": value} if isinstance(value, str) else {str(k): str(v) for k, v in value.items()}
        with transaction(conn):
            if merge:
                old = self.get(conn, name)
                if isinstance(old, dict):
                    fields = {**old, **fields}
            token = self._fernet.encrypt(json.dumps(fields).encode())
            conn.execute("INSERT INTO stored_secrets(name, ciphertext, fields, updated_ts) VALUES (?,?,?,?)"
                         " ON CONFLICT(name) DO UPDATE SET ciphertext=excluded.ciphertext, fields=excluded.fields,"
                         " updated_ts=excluded.updated_ts",
                         (name, token, json.dumps(sorted(fields)), time.time()))

    def get(self, conn: sqlite3.Connection, name: str) -> dict[str, str] | None:
        row = conn.execute("SELECT ciphertext FROM stored_secrets WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(self._fernet.decrypt(bytes(row[0])))
        except InvalidToken:
            raise SecretError(f"secret {name!r} cannot be decrypted with {str(self.key_file)!r} (another key?)") from None

    def value(self, conn: sqlite3.Connection, name: str) -> str:
        data = self.get(conn, name) or {}
        return data.get("value", "")


def describe(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """What is stored, for the Settings page: names, field names and times — no values."""
    return [{"name": r["name"], "fields": json.loads(r["fields"]), "updated_ts": r["updated_ts"]}
            for r in conn.execute("SELECT name, fields, updated_ts FROM stored_secrets ORDER BY name")]


def delete(conn: sqlite3.Connection, name: str) -> bool:
    with transaction(conn):
        return conn.execute("DELETE FROM stored_secrets WHERE name=?", (name,)).rowcount > 0


def put_setting(conn: sqlite3.Connection, kind: str, scope: str, key: str, value: str) -> None:
    """A setting entered in Settings (status map entry, endpoint override); applied at start by
    `apply_to_config` and by the Settings page to the running config."""
    with transaction(conn):
        conn.execute("INSERT INTO stored_settings(kind, scope, key, value, updated_ts) VALUES (?,?,?,?,?)"
                     " ON CONFLICT(kind, scope, key) DO UPDATE SET value=excluded.value, updated_ts=excluded.updated_ts",
                     (kind, scope, key, value, time.time()))


def stamps(conn: sqlite3.Connection) -> dict[str, float]:
    """When each stored secret ("secret:<name>") and each kind and scope of stored settings
    ("<kind>:<scope>") last changed: another cloud process's Settings page shows here first."""
    out = {f"secret:{name}": ts for name, ts in conn.execute("SELECT name, updated_ts FROM stored_secrets")}
    out.update({f"{kind}:{scope}": ts for kind, scope, ts in conn.execute(
        "SELECT kind, scope, MAX(updated_ts) FROM stored_settings GROUP BY kind, scope")})
    return out


def use_stored_bot_token(conn: sqlite3.Connection, cfg: CloudConfig) -> bool:
    """The bot token stored in Settings handed to [alerts] again (it changed): only where [alerts] names
    no other source; True when handed over."""
    alerts = cfg.alerts
    if alerts is None or alerts.token_file is not None or alerts.token_env not in (None, BOT_TOKEN_ENV):
        return False
    value = SecretStore(key_file_for(cfg)).value(conn, BOT_TOKEN)
    if not value:
        return False
    os.environ[BOT_TOKEN_ENV] = value  # this process only, as at start: never written out in clear
    alerts.token_env = BOT_TOKEN_ENV
    return True


def settings(conn: sqlite3.Connection, kind: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT scope, key, value, updated_ts FROM stored_settings WHERE kind=?"
                                          " ORDER BY scope, key", (kind,))]


def apply_settings(conn: sqlite3.Connection, cfg: CloudConfig) -> None:
    for r in settings(conn, "status_map"):
        cfg.status_map.setdefault(r["scope"], {})[r["key"]] = r["value"]
    for r in settings(conn, "alerts"):  # the Telegram chat entered in Settings: alerts on without [alerts]
        if r["key"] == "chat_id" and r["value"]:
            cfg.alerts = cfg.alerts or AlertsConfig()
            cfg.alerts.chat_id = r["value"]
    for r in settings(conn, "endpoint"):
        if r["scope"] in cfg.accounts:
            endpoints = cfg.accounts[r["scope"]].account.endpoints
            endpoints[r["key"]] = {**endpoints.get(r["key"], {}), "path": r["value"]}


def account_secret_name(account: str) -> str:
    return f"account/{account}"


def apply_to_config(conn: sqlite3.Connection, cfg: CloudConfig, *, waiting: list[str] | None = None) -> list[str]:
    """Merge stored credentials into the accounts that reference them (`credentials_secret`), and the
    stored bot token into [alerts] when it names no other source. Returns the accounts updated.

    An account whose stored secret is not there yet raises SecretError — or, given a `waiting` list, is
    added to it instead (the running service starts without that account, which comes alive once its
    credentials are entered in Settings)."""
    apply_settings(conn, cfg)
    wanted = {name: a.credentials_secret for name, a in cfg.accounts.items() if a.credentials_secret}
    alerts = cfg.alerts
    needs_bot = alerts is not None and alerts.token_env is None and alerts.token_file is None
    if not wanted and not (needs_bot and conn.execute("SELECT 1 FROM stored_secrets WHERE name=?",
                                                      (BOT_TOKEN,)).fetchone()):
        return []
    store = SecretStore(key_file_for(cfg))
    done = []
    for account, secret_name in wanted.items():
        data = store.get(conn, str(secret_name))
        if data is None and waiting is not None:
            if account in cfg.accounts:
                waiting.append(account)
            continue
        if data is None:
            raise SecretError(f"accounts.{account}.credentials_secret: no stored secret {secret_name!r}"
                              " (enter it in Settings)")
        if account in cfg.accounts:
            cfg.accounts[account].account.credentials.update(data)
            done.append(account)
    if needs_bot and alerts is not None and store.value(conn, BOT_TOKEN):
        # handed to cloud_sync.alerts through this process's own environment: never written out in clear
        os.environ[BOT_TOKEN_ENV] = store.value(conn, BOT_TOKEN)
        alerts.token_env = BOT_TOKEN_ENV
    return done
