"""The "exchange with a site" HTTP endpoint that 1C (УНФ, УТ 11, КА 2, ERP 2, Бухгалтерия, Розница) calls
with no custom code: marketsync plays the site. `exchange_blueprint(config)` is a Flask Blueprint.

    GET  ?type=catalog|sale&mode=checkauth      Basic auth -> "success\\n<cookie>\\n<value>\\nsessid=…"
    GET  ?type=…&mode=init                      "zip=yes|no\\nfile_limit=N"
    POST ?type=catalog&mode=file&filename=F     raw body; chunks of one file are appended in order
    GET  ?type=catalog&mode=import&filename=F   "progress" until the background import ends, then
                                                "success" or "failure\\n<reason>" (these polls only read:
                                                they never wait for the import's transaction)
    GET  ?type=catalog&mode=deactivate|complete "success"
    GET  ?type=sale&mode=query                  orders as CommerceML «Заказ товара» documents
    GET  ?type=sale&mode=success                the orders of the last query are delivered to 1C
    POST ?type=sale&mode=file&filename=F        1C's statuses of those orders (shipped, cancelled, paid)
    GET  ?type=…&mode=info                      the site's reference lists (statuses, marketplaces)

Every answer is plain text as 1C expects it; every refusal is "failure\\n<reason>" plus a log line,
and nothing of a refused upload or import is applied (an import runs in one transaction).
Uploads live in `<work_dir>/<session>/`; zip archives are unpacked with limits on size, ratio and
member count, and no member may leave that folder. Disk quotas: one session's folder at most
`max_session_bytes`, the whole work_dir at most `max_total_bytes` (a chunk past either is refused and
that file's part removed); uploads of expired sessions, and of sessions untouched for
`abandoned_upload_s` with no import running, are removed at each checkauth and when the total is full.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from flask import Blueprint, Response, request

from cloud_sync.access import users
from cloud_sync.config import CloudConfig
from cloud_sync.config_sections import OnecSettings, section_password
from cloud_sync.db import connect, transaction, write_if_free
from cloud_sync.onec import orders_out
from cloud_sync.onec.importer import import_files
from cloud_sync.onec.parser import CommerceMLError
from cloud_sync.schema import open_db

log = logging.getLogger("marketsync.onec")

TOUCH_EVERY_S = 60  # a session's last_seen is refreshed at most this often (reads never wait for a writer)


@dataclass
class ExchangeConfig:
    """The exchange as it runs: the `[onec]` section of cloud.toml (cloud_sync.config_sections.OnecSettings,
    whose defaults these are) with its password read, and where the database and the uploads are."""

    db_path: str
    work_dir: str
    login: str = OnecSettings.login
    password: str = field(default="", repr=False)
    file_limit: int = OnecSettings.file_limit  # bytes per request, told to 1C at init
    zip: bool = OnecSettings.zip
    max_file_bytes: int = OnecSettings.max_file_bytes  # one uploaded or unpacked file, all chunks together
    max_unpacked_bytes: int = OnecSettings.max_unpacked_bytes  # one archive, all members together
    max_session_bytes: int = OnecSettings.max_session_bytes  # one session's folder, uploaded and unpacked
    max_total_bytes: int = OnecSettings.max_total_bytes  # the whole work_dir
    abandoned_upload_s: int = OnecSettings.abandoned_upload_s  # a session's uploads untouched this long go
    max_zip_members: int = OnecSettings.max_zip_members
    max_zip_ratio: int = OnecSettings.max_zip_ratio  # uncompressed / compressed, per member
    encoding: str = OnecSettings.encoding  # of the orders XML answered to mode=query ("utf-8" too)
    cookie_name: str = OnecSettings.cookie_name
    session_ttl_s: int = OnecSettings.session_ttl_s
    cost_price_types: tuple[str, ...] = ()
    cancel_on_marketplace: bool = OnecSettings.cancel_on_marketplace  # a cancellation in 1C cancels on the marketplace
    timezone: str = OnecSettings.timezone  # 1C's local time (package dates)
    in_flight_horizon_h: float = OnecSettings.in_flight_horizon_h

    @classmethod
    def from_section(cls, section: OnecSettings, *, db_path: str, work_dir: str) -> ExchangeConfig:
        """From `[onec]` as read at load; the password now: `password_env` (an environment variable) or
        `password_file`; an inline `password` is for local sandboxes and the demo only."""
        return cls(db_path=db_path, work_dir=section.work_dir or work_dir, login=section.login,
                   password=section_password(section), file_limit=section.file_limit, zip=section.zip,
                   max_file_bytes=section.max_file_bytes, max_unpacked_bytes=section.max_unpacked_bytes,
                   max_session_bytes=section.max_session_bytes, max_total_bytes=section.max_total_bytes,
                   abandoned_upload_s=section.abandoned_upload_s,
                   max_zip_members=section.max_zip_members, max_zip_ratio=section.max_zip_ratio,
                   encoding=section.encoding, cookie_name=section.cookie_name, session_ttl_s=section.session_ttl_s,
                   cost_price_types=tuple(section.cost_price_types),
                   cancel_on_marketplace=section.cancel_on_marketplace, timezone=section.timezone,
                   in_flight_horizon_h=section.in_flight_horizon_h)


class Refused(Exception):
    """A request 1C must be told "failure" about; the message is the reason (never a secret)."""


class QuotaFull(Refused):
    """An upload past `max_session_bytes` or `max_total_bytes`."""


def _folder_bytes(folder: Path) -> int:
    """The bytes of every file under `folder` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _last_change(folder: Path) -> float:
    """When anything under `folder` last changed (its own time when it is empty)."""
    newest = folder.stat().st_mtime
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
    return newest


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, mimetype="text/plain", headers=headers or {})


def _failure(reason: str, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    where = f"type={request.args.get('type', '')} mode={request.args.get('mode', '')}"
    log.warning("1C exchange refused (%s from %s): %s", where, request.remote_addr, reason)  # never the login
    return _text(f"failure\n{reason}\n", status, headers)


def safe_member_path(root: Path, name: str) -> Path:
    """`name` (from 1C or from a zip) as a path inside `root`; refused when it would leave it."""
    if not name or "\x00" in name or "\\" in name:
        raise Refused(f"unsafe file name {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or ":" in pure.parts[0]:
        raise Refused(f"unsafe file name {name!r} (absolute or leaving the exchange folder)")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise Refused(f"unsafe file name {name!r} (leaves the exchange folder)")
    return target


class Exchange:
    """The exchange's state machine over the database and the session folders."""

    def __init__(self, config: ExchangeConfig, cloud_config: Any = None,
                 address: Callable[[], str] | None = None) -> None:
        self.config = config
        self.cloud_config = cloud_config
        self._address = address  # who is asking (the client a trusted proxy names); else the peer
        self.work = Path(config.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        open_db(config.db_path).close()  # the schema is up to date before the first request
        self._local = threading.local()
        self._threads: dict[int, threading.Thread] = {}

    # -- plumbing

    def conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = connect(self.config.db_path)
        return c

    def address(self) -> str:
        return self._address() if self._address is not None else (request.remote_addr or "")

    def session_dir(self, sid: str) -> Path:
        return self.work / sid

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait for background imports (tests and shutdown)."""
        deadline = time.time() + timeout
        for t in list(self._threads.values()):
            t.join(max(0.0, deadline - time.time()))

    # -- modes

    def checkauth(self) -> Response:
        """HTTP Basic, throttled like the manager's login (cloud_sync.access.users `throttle_wait`, per
        login and address, growing waits) under the name `1c:<login>`. 1C keeps no cookie from one exchange
        to the next, so the address it logged in from before is its known device: a stranger guessing
        elsewhere never delays it. No refusal repeats the login it was given."""
        auth = request.authorization
        challenge = {"WWW-Authenticate": 'Basic realm="marketsync 1C exchange", charset="UTF-8"'}
        if auth is None or auth.type != "basic":
            return _failure("нужна авторизация (HTTP Basic)", status=401, headers=challenge)
        conn, address = self.conn(), self.address()
        name = "1c:" + (auth.username or "")[:64]
        device = users.known_device(conn, name, f"address:{address}")
        wait = users.throttle_wait(conn, name, address, device)
        if wait > 0:
            seconds = int(wait) + 1
            return _failure(f"слишком много неверных попыток входа: повторите через {seconds} с", status=429,
                            headers={"Retry-After": str(seconds)})
        ok_login = hmac.compare_digest((auth.username or "").encode(), self.config.login.encode())
        ok_pass = bool(self.config.password) and hmac.compare_digest(
            (auth.password or "").encode(), self.config.password.encode())
        if not (ok_login and ok_pass):
            users.note_failure(conn, name, address, device)
            return _failure("неверный логин или пароль", status=401, headers=challenge)
        users.note_success(conn, name, address, device)
        users.remember_device(conn, name, f"address:{address}")
        sid = secrets.token_hex(16)
        with transaction(self.conn()):
            self.conn().execute("INSERT INTO onec_sessions(id, login) VALUES (?, ?)", (sid, auth.username))
            self.conn().execute("DELETE FROM onec_sessions WHERE last_seen < datetime('now', ?)",
                                (f"-{self.config.session_ttl_s} seconds",))
        self.sweep()
        log.info("1C exchange: session started for %s", auth.username)
        return _text(f"success\n{self.config.cookie_name}\n{sid}\nsessid={sid}\ntimestamp={int(time.time())}\n")

    def session(self) -> str:
        sid = request.cookies.get(self.config.cookie_name, "")
        if not sid:
            raise Refused("no exchange session cookie: call mode=checkauth first")
        conn = self.conn()
        row = conn.execute(
            "SELECT last_seen < datetime('now', ?) AS stale FROM onec_sessions WHERE id=? AND"
            " last_seen >= datetime('now', ?)",
            (f"-{TOUCH_EVERY_S} seconds", sid, f"-{self.config.session_ttl_s} seconds")).fetchone()
        if row is None:
            raise Refused("unknown or expired exchange session: call mode=checkauth again")
        if row["stale"]:
            self._touch(conn, sid)
        return sid

    def _touch(self, conn: Any, sid: str) -> None:
        """Keep the session alive — unless the database is being written (an import holds it): then
        later. 1C's `progress` polling must never wait for the import it asks about."""
        write_if_free(conn, "UPDATE onec_sessions SET last_seen=datetime('now') WHERE id=?", (sid,))

    def init(self, sid: str) -> Response:
        folder = self.session_dir(sid)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        with transaction(self.conn()):
            self.conn().execute("UPDATE onec_sessions SET initialized=1, zip=? WHERE id=?",
                                (int(self.config.zip), sid))
            self.conn().execute("DELETE FROM onec_uploads WHERE session_id=?", (sid,))
            # a new exchange in the same session: its files are imported afresh
            self.conn().execute("DELETE FROM onec_import_jobs WHERE session_id=? AND state IN ('success', 'failure')",
                                (sid,))
        return _text(f"zip={'yes' if self.config.zip else 'no'}\nfile_limit={self.config.file_limit}\n")

    def _initialized(self, sid: str) -> None:
        row = self.conn().execute("SELECT initialized FROM onec_sessions WHERE id=?", (sid,)).fetchone()
        if not row or not row[0]:
            raise Refused("out of order: mode=init must come before files")

    def _read_body(self) -> bytes:
        limit = self.config.file_limit
        declared = request.content_length
        if declared is not None and declared > limit:
            raise Refused(f"chunk of {declared} bytes is larger than file_limit={limit} announced at init")
        body = request.stream.read(limit + 1)
        if len(body) > limit:
            raise Refused(f"chunk larger than file_limit={limit} announced at init")
        if not body:
            raise Refused("empty file chunk")
        return body

    def sweep(self, keep: str = "") -> int:
        """Remove the uploads of sessions that expired, and of sessions untouched for `abandoned_upload_s`
        with no import running (an exchange 1C never finished); never `keep`'s. The bytes freed."""
        conn = self.conn()
        live = {r[0] for r in conn.execute("SELECT id FROM onec_sessions")}
        busy = {r[0] for r in conn.execute(
            "SELECT session_id FROM onec_import_jobs WHERE state IN ('queued', 'running')")}
        cutoff = time.time() - self.config.abandoned_upload_s
        freed = 0
        for folder in self.work.iterdir():
            if not folder.is_dir() or folder.name == keep:
                continue
            abandoned = folder.name in live and folder.name not in busy and _last_change(folder) < cutoff
            if folder.name not in live or abandoned:
                freed += _folder_bytes(folder)
                shutil.rmtree(folder, ignore_errors=True)
                if abandoned:
                    with transaction(conn):
                        conn.execute("DELETE FROM onec_uploads WHERE session_id=?", (folder.name,))
                    log.info("1C exchange: abandoned uploads of a session removed (%d bytes)", freed)
        return freed

    def _check_quota(self, sid: str, adding: int) -> None:
        """Refuse a chunk that would take the session's folder past `max_session_bytes` or the exchange's
        past `max_total_bytes` (abandoned uploads are cleaned first)."""
        mine = _folder_bytes(self.session_dir(sid)) + adding
        if mine > self.config.max_session_bytes:
            raise QuotaFull(f"место сеанса обмена исчерпано: файлы этого обмена заняли бы {mine} байт, предел "
                            f"[onec] max_session_bytes = {self.config.max_session_bytes}; начните обмен заново "
                            "или увеличьте предел")
        total = _folder_bytes(self.work) + adding
        if total > self.config.max_total_bytes:
            self.sweep(keep=sid)
            total = _folder_bytes(self.work) + adding
        if total > self.config.max_total_bytes:
            raise QuotaFull(f"место для обмена с 1С заполнено: заняло бы {total} байт, предел [onec] "
                            f"max_total_bytes = {self.config.max_total_bytes}; повторите позже или увеличьте предел")

    def upload(self, sid: str) -> Response:
        self._initialized(sid)
        filename = request.args.get("filename", "")
        folder = self.session_dir(sid)
        target = safe_member_path(folder, filename)
        body = self._read_body()
        conn = self.conn()
        row = conn.execute("SELECT size, chunks, sealed FROM onec_uploads WHERE session_id=? AND filename=?",
                           (sid, filename)).fetchone()
        if row is not None and row["sealed"]:
            raise Refused(f"out of order: a chunk of {filename} after its import began; start again with init")
        size = (row["size"] if row else 0) + len(body)
        if size > self.config.max_file_bytes:
            raise Refused(f"{filename} grows past max_file_bytes={self.config.max_file_bytes}")
        try:
            self._check_quota(sid, len(body))
        except QuotaFull:  # what this file got so far goes too: the space is free at once
            target.unlink(missing_ok=True)
            with transaction(conn):
                conn.execute("DELETE FROM onec_uploads WHERE session_id=? AND filename=?", (sid, filename))
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab" if row else "wb") as fh:
            fh.write(body)
        with transaction(conn):
            conn.execute(
                "INSERT INTO onec_uploads(session_id, filename, path, size, chunks) VALUES (?,?,?,?,1)"
                " ON CONFLICT(session_id, filename) DO UPDATE SET size=excluded.size, chunks=chunks+1",
                (sid, filename, str(target), size))
        return _text("success\n")

    # -- catalog import

    def _unpack_archives(self, sid: str) -> None:
        conn = self.conn()
        folder = self.session_dir(sid)
        for row in conn.execute("SELECT filename, path FROM onec_uploads WHERE session_id=? AND sealed=0",
                                (sid,)).fetchall():
            path = Path(row["path"])
            with open(path, "rb") as fh:
                magic = fh.read(4)
            if magic[:2] == b"PK" or row["filename"].lower().endswith(".zip"):
                unpack_zip(path, folder, self.config)
                path.unlink()
        conn.execute("UPDATE onec_uploads SET sealed=1 WHERE session_id=?", (sid,))

    def import_file(self, sid: str) -> Response:
        self._initialized(sid)
        filename = request.args.get("filename", "")
        folder = self.session_dir(sid)
        target = safe_member_path(folder, filename)
        conn = self.conn()
        job = conn.execute("SELECT id, state, reason FROM onec_import_jobs WHERE session_id=? AND filename=?"
                           " ORDER BY id DESC LIMIT 1", (sid, filename)).fetchone()
        if job is None:
            try:
                with transaction(conn):
                    self._unpack_archives(sid)
            except Refused:
                raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
                raise Refused(f"broken archive: {exc}") from None
            if not target.is_file():
                raise Refused(f"{filename} was not uploaded in this exchange")
            with transaction(conn):
                job_id = conn.execute("INSERT INTO onec_import_jobs(session_id, filename, state) VALUES (?,?,"
                                      "'running')", (sid, filename)).lastrowid
            thread = threading.Thread(target=self._run_import, args=(job_id, target), daemon=True,
                                      name=f"onec-import-{job_id}")
            self._threads[job_id] = thread
            thread.start()
            return _text(f"progress\nimport of {filename} started\n")
        if job["state"] in ("queued", "running"):
            return _text(f"progress\nimporting {filename}\n")
        if job["state"] == "success":
            return _text("success\n")
        return _failure(job["reason"] or "import failed")

    def _run_import(self, job_id: int, path: Path) -> None:
        conn = connect(self.config.db_path)
        state, reason, summary = "failure", "", {}
        try:
            result = import_files(conn, [path], details=False, cost_price_types=self.config.cost_price_types,
                                  timezone=self.config.timezone,
                                  in_flight_horizon_s=self.config.in_flight_horizon_h * 3600)
            state, summary = "success", result.as_json()
            log.info("1C import of %s: %s items, %s offers, %s warnings", path.name, result.items,
                     result.offers, len(result.warnings))
        except CommerceMLError as exc:
            reason = f"{exc}; nothing was imported"
            log.warning("1C import of %s refused: %s", path.name, exc)
        except Exception as exc:  # an internal fault: 1C is told, the log keeps the trace
            reason = f"internal error importing {path.name} ({type(exc).__name__}); nothing was imported"
            log.exception("1C import of %s failed", path.name)
        try:
            with transaction(conn):
                conn.execute("UPDATE onec_import_jobs SET state=?, reason=?, summary=?, finished_at=datetime('now')"
                             " WHERE id=?", (state, reason, json.dumps(summary, ensure_ascii=False), job_id))
        finally:
            conn.close()
            self._threads.pop(job_id, None)

    def complete(self, sid: str) -> Response:
        shutil.rmtree(self.session_dir(sid), ignore_errors=True)
        return _text("success\n")

    # -- sale

    def query(self, sid: str) -> Response:
        body = orders_out.query_answer(self.conn(), sid, encoding=self.config.encoding)
        return Response(body, content_type=f"application/xml; charset={orders_out.xml_encoding(self.config.encoding)}")

    def sale_success(self, sid: str) -> Response:
        n = orders_out.mark_delivered(self.conn(), sid)
        log.info("1C took %d order(s)", n)
        return _text("success\n")

    def sale_file(self, sid: str) -> Response:
        self._initialized(sid)
        filename = request.args.get("filename", "") or "documents.xml"
        target = safe_member_path(self.session_dir(sid), filename)
        body = self._read_body()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        try:
            applied = orders_out.apply_feedback(self.conn(), target, cloud_config=self.cloud_config,
                                                cancel_on_marketplace=self.config.cancel_on_marketplace)
        except CommerceMLError as exc:
            raise Refused(f"{exc}; no status was applied") from None
        log.info("1C sent statuses of %d order(s)", applied)
        return _text("success\n")

    def info(self) -> Response:
        return Response(orders_out.info_xml(self.config.encoding),
                        content_type=f"application/xml; charset={orders_out.xml_encoding(self.config.encoding)}")


def exchange_blueprint(config: ExchangeConfig, *, cloud_config: Any = None, url_prefix: str = "",
                       address: Callable[[], str] | None = None) -> Blueprint:
    """The 1C exchange as a Blueprint: answers at /1c/exchange and at /bitrix/admin/1c_exchange.php (the
    path 1C proposes by default). `cloud_config` (CloudConfig) lets a cancellation from 1C cancel the
    order in the cloud's order flow; `address()` says who is asking (the web app's `client_address`,
    which believes only our own proxies; default: the peer)."""
    ex = Exchange(config, cloud_config, address)
    bp = Blueprint("onec_exchange", __name__, url_prefix=url_prefix or None)
    bp.exchange = ex  # type: ignore[attr-defined]

    @bp.route("/1c/exchange", methods=["GET", "POST"])
    @bp.route("/bitrix/admin/1c_exchange.php", methods=["GET", "POST"])
    def exchange() -> Response:
        kind = request.args.get("type", "")
        mode = request.args.get("mode", "")
        try:
            if kind not in ("catalog", "sale", "get_catalog"):
                raise Refused(f"unknown type {kind!r} (catalog or sale)")
            if mode == "checkauth":
                return ex.checkauth()
            sid = ex.session()
            if mode == "init":
                return ex.init(sid)
            if mode == "info":
                return ex.info()
            if kind == "catalog":
                if mode == "file":
                    return ex.upload(sid)
                if mode == "import":
                    return ex.import_file(sid)
                if mode in ("deactivate", "complete"):
                    return ex.complete(sid) if mode == "complete" else _text("success\n")
            if kind == "sale":
                if mode == "query":
                    return ex.query(sid)
                if mode == "success":
                    return ex.sale_success(sid)
                if mode == "file":
                    return ex.sale_file(sid)
                if mode in ("import", "complete"):
                    return _text("success\n")
            raise Refused(f"unknown mode {mode!r} for type={kind}")
        except Refused as exc:
            return _failure(str(exc))

    return bp


def unpack_zip(archive: Path, folder: Path, config: ExchangeConfig) -> list[Path]:
    """Unpack an uploaded archive into the session folder, refusing zip bombs and path traversal.

    Declared sizes are checked first and the real bytes are counted while writing (a lying header
    cannot get past the limits); anything refused leaves no member behind."""
    written: list[Path] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > config.max_zip_members:
                raise Refused(f"archive has {len(members)} members (limit {config.max_zip_members})")
            total_declared = sum(m.file_size for m in members)
            if total_declared > config.max_unpacked_bytes:
                raise Refused(f"archive would unpack to {total_declared} bytes (limit {config.max_unpacked_bytes})")
            total = 0
            for m in members:
                if m.is_dir():
                    continue
                if (m.external_attr >> 16) & 0o170000 == 0o120000:
                    raise Refused(f"archive member {m.filename!r} is a symbolic link")
                target = safe_member_path(folder, m.filename)
                if m.file_size > config.max_file_bytes:
                    raise Refused(f"archive member {m.filename!r} is {m.file_size} bytes (limit {config.max_file_bytes})")
                if m.compress_size and m.file_size / m.compress_size > config.max_zip_ratio:
                    raise Refused(f"archive member {m.filename!r} expands {m.file_size // max(m.compress_size, 1)}x"
                                  f" (a zip bomb? limit {config.max_zip_ratio}x)")
                target.parent.mkdir(parents=True, exist_ok=True)
                size = 0
                with zf.open(m) as src, open(target, "wb") as dst:
                    written.append(target)
                    while chunk := src.read(1 << 20):
                        size += len(chunk)
                        total += len(chunk)
                        if size > m.file_size or size > config.max_file_bytes or total > config.max_unpacked_bytes:
                            raise Refused(f"archive member {m.filename!r} unpacks past its declared size or the "
                                          "limits (a zip bomb?)")
                        dst.write(chunk)
    except Refused:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        for p in written:
            p.unlink(missing_ok=True)
        raise Refused(f"broken archive {archive.name}: {exc}") from None
    return written


def register_exchange(app: Any, cloud_config: CloudConfig, db_path: str,
                      address: Callable[[], str] | None = None) -> bool:
    """Register the exchange on the cloud's app when cloud.toml has an `[onec]` section with a password
    (`password_env`, `password_file` or, for local use, `password`). Returns whether it was registered."""
    section = cloud_config.onec
    if section is None or section == OnecSettings():  # no [onec], or one that sets nothing
        return False
    cfg = ExchangeConfig.from_section(section, db_path=db_path,
                                      work_dir=str(Path(db_path).resolve().parent / "onec-exchange"))
    if not cfg.password:
        log.warning("1C exchange not started: [onec] has no password (password_env or password_file)")
        return False
    app.register_blueprint(exchange_blueprint(cfg, cloud_config=cloud_config, address=address))
    return True
