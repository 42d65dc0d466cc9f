"""Telegram alerts against a local server speaking the Bot API's sendMessage (tests/alerts/conftest.py):
delivery, 429 retry_after, permanent refusals, dedup, rate limit, critical stock, order events, zero
guard, restart survival, and the token never appearing in logs, errors or the database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from cloud_sync.alerts import checks, outbox
from cloud_sync.alerts.outbox import AlertConfigError, AlertSettings, TelegramSender
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.config import ConfigError, parse_config
from cloud_sync.config_sections import AlertsConfig
from cloud_sync.db import transaction
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger

TOKEN = "123456789:AAF-secret-test-token-never-log-me"  # the same as the local Bot API's (conftest.py)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def settings(api, **kw) -> AlertSettings:
    return AlertSettings(base_url=api.url, chat_id="-100200", token=TOKEN, **kw)


def test_delivers_in_order_and_marks_sent(db, bot_api):
    clock = Clock()
    for n in range(3):
        outbox.enqueue(db, "test", f"k{n}", f"message {n}", now=clock())
    sender = TelegramSender(bot_api.url, TOKEN)
    stats = outbox.deliver(db, sender, settings(bot_api, min_interval_s=1.0), clock=clock, sleep=clock.sleep)
    assert stats.sent == 3
    assert bot_api.texts == ["message 0", "message 1", "message 2"]
    assert all(body["chat_id"] == "-100200" for _, body in bot_api.requests)
    assert clock.sleeps == [1.0, 1.0]  # one message per second per chat
    assert outbox.pending(db) == []
    assert outbox.deliver(db, sender, settings(bot_api), clock=clock, sleep=clock.sleep).sent == 0


def test_429_retry_after_pauses_the_chat(db, bot_api):
    clock = Clock()
    outbox.enqueue(db, "test", "a", "first", now=clock())
    outbox.enqueue(db, "test", "b", "second", now=clock())
    bot_api.script.append((429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
                                 "parameters": {"retry_after": 7}}))
    sender = TelegramSender(bot_api.url, TOKEN)
    st = settings(bot_api, min_interval_s=0)
    stats = outbox.deliver(db, sender, st, clock=clock, sleep=clock.sleep)
    assert (stats.sent, stats.failed, stats.throttled_until) == (0, 1, clock() + 7)
    assert len(bot_api.requests) == 1  # the second message was not tried while the chat is paused
    clock.t += 5
    assert outbox.deliver(db, sender, st, clock=clock, sleep=clock.sleep).sent == 0
    assert len(bot_api.requests) == 1
    clock.t += 3
    assert outbox.deliver(db, sender, st, clock=clock, sleep=clock.sleep).sent == 2
    assert bot_api.texts == ["first", "first", "second"]


def test_permanent_refusal_gives_up_and_server_error_retries(db, bot_api):
    clock = Clock()
    outbox.enqueue(db, "test", "a", "refused", now=clock())
    outbox.enqueue(db, "test", "b", "later", now=clock())
    bot_api.script += [(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
                       (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})]
    sender = TelegramSender(bot_api.url, TOKEN)
    stats = outbox.deliver(db, sender, settings(bot_api, min_interval_s=0), clock=clock, sleep=clock.sleep)
    assert (stats.gave_up, stats.failed) == (1, 1)
    [row] = outbox.pending(db)
    assert row["text"] == "later" and "502" in row["last_error"] and row["next_ts"] > clock()
    clock.t += 10
    assert outbox.deliver(db, sender, settings(bot_api, min_interval_s=0), clock=clock, sleep=clock.sleep).sent == 1


def test_token_never_in_logs_errors_or_database(db, bot_api, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    outbox.enqueue(db, "test", "a", "hello", now=clock())
    # a wrong base URL path: the server answers 404 and echoes nothing secret; then the server goes away
    bot_api.script.append((500, {"ok": False, "error_code": 500, "description": f"internal error for bot{TOKEN}"}))
    sender = TelegramSender(bot_api.url, TOKEN)
    outbox.deliver(db, sender, settings(bot_api, min_interval_s=0), clock=clock, sleep=clock.sleep)
    bot_api.stop()
    clock.t += 3600
    stats = outbox.deliver(db, sender, settings(bot_api, min_interval_s=0), clock=clock, sleep=clock.sleep)
    assert stats.failed == 1
    [row] = outbox.pending(db)
    assert row["last_error"] and TOKEN not in row["last_error"]
    assert "***" in outbox.redact(f"bot{TOKEN}", TOKEN)
    assert TOKEN not in caplog.text and TOKEN not in repr(sender) and TOKEN not in repr(settings(bot_api))
    if getattr(db, "engine", "sqlite") == "postgresql":  # every row of every table of the store, as text
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert tables and all(TOKEN not in repr(tuple(r)) for t in tables for r in db.execute(f"SELECT * FROM {t}"))
    else:
        db.execute("PRAGMA wal_checkpoint(FULL)")
        assert TOKEN.encode() not in (tmp_path / "tenant.sqlite").read_bytes()


def test_outbox_survives_restart(tmp_path, bot_api):
    path = tmp_path / "t.sqlite"
    conn = open_db(path)
    outbox.enqueue(conn, "test", "a", "before restart")
    conn.close()
    conn = open_db(path)
    stats = outbox.deliver(conn, TelegramSender(bot_api.url, TOKEN), settings(bot_api, min_interval_s=0))
    assert stats.sent == 1 and bot_api.texts == ["before restart"]
    conn.close()


def test_dedup_window(db):
    assert outbox.enqueue(db, "x", "same", "one", now=1000.0) is not None
    assert outbox.enqueue(db, "x", "same", "two", now=1000.0 + 60) is None
    assert outbox.enqueue(db, "x", "same", "three", now=1000.0 + 7 * 3600) is not None
    assert [r["text"] for r in outbox.pending(db)] == ["one", "three"]


def _alerts(section: dict) -> AlertsConfig | None:
    """An [alerts] table as cloud.toml's reader reads it at load."""
    return parse_config({"alerts": section}).alerts


def test_settings_from_config(tmp_path):
    s = AlertSettings.from_config(_alerts({"chat_id": 42, "token_env": "BOT", "base_url": "http://127.0.0.1:9/"}),
                                  env={"BOT": TOKEN})
    assert s.enabled and s.chat_id == "42" and s.base_url == "http://127.0.0.1:9"
    assert not AlertSettings.from_config(_alerts({})).enabled
    with pytest.raises(AlertConfigError, match="not set") as e:
        AlertSettings.from_config(_alerts({"token_env": "NOPE"}), env={})
    with pytest.raises(ConfigError, match="token_env or token_file") as inline:  # refused when the file is read
        _alerts({"token": TOKEN})
    assert TOKEN not in str(e.value) and TOKEN not in str(inline.value)


def test_critical_stock_once_per_episode(db):
    with transaction(db):
        nom.upsert_items(db, [nom.Item(id="i1", name="Кружка", article="MS-3")])
        ledger.record_move(db, "i1", "main", "balance", on_hand_delta=10)
    checks.set_minimum(db, "i1", 3)
    with pytest.raises(ValueError, match="unknown item"):
        checks.set_minimum(db, "nope", 3)
    assert checks.check_critical_stock(db, now=1.0) == []
    with transaction(db):
        ledger.record_move(db, "i1", "main", "reserve", reserved_delta=8)
    assert checks.check_critical_stock(db, now=2.0) == ["i1"]
    assert checks.check_critical_stock(db, now=3.0) == []  # still low: no second alert
    [row] = outbox.pending(db)
    assert "Кружка" in row["text"] and "доступно 2, минимум 3" in row["text"]  # the [ui] language: Russian
    with transaction(db):
        ledger.record_move(db, "i1", "main", "receipt", on_hand_delta=5)
    assert checks.check_critical_stock(db, now=4.0) == []  # recovered
    with transaction(db):
        ledger.record_move(db, "i1", "main", "writeoff", on_hand_delta=-6)
    assert checks.check_critical_stock(db, now=5.0) == ["i1"]  # a new episode
    assert len(outbox.pending(db)) == 2


def test_order_events_deadlines_and_zero_guard(db):
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    db.execute("INSERT INTO orders(id, key, account, marketplace, native_id, number, stage, status, created_at,"
               " ship_by, ingested_ts, updated_ts) VALUES (1, 'wb1:77', 'wb1', 'wildberries', '77', 'N-77', 'reserved',"
               " 'reserved', ?, ?, 0, 0)", (now.isoformat(), (now + timedelta(minutes=90)).isoformat()))
    db.execute("INSERT INTO order_events(order_id, ts, kind, detail) VALUES (1, 0, 'reserved', 'from before')")
    assert checks.scan_order_events(db, now=now.timestamp()) == 0  # the first scan starts from now
    for kind, detail in (("reserved", ""), ("confirmed", ""), ("cancelled", "by buyer"), ("cancelled", "again")):
        db.execute("INSERT INTO order_events(order_id, ts, kind, detail) VALUES (1, 0, ?, ?)", (kind, detail))
    assert checks.scan_order_events(db, now=now.timestamp()) == 2  # new + cancelled; duplicate cancel deduped
    assert checks.scan_order_events(db, now=now.timestamp()) == 0  # the cursor moved on
    texts = [r["text"] for r in outbox.pending(db)]
    assert any("Новый заказ N-77 (wb1)" in t for t in texts) and any("N-77 (wb1) отменён by buyer" in t for t in texts)
    assert any("собрать до 27.11.2026" in t for t in texts)  # the date as the pages write it
    near = [{"key": "wb1:77", "account": "wb1", "number": "N-77", "ship_by": (now + timedelta(minutes=90)).isoformat()}]
    assert checks.check_deadlines(db, near, now=now.timestamp()) == 1
    assert checks.check_deadlines(db, near, now=now.timestamp() + 60) == 0
    assert "до конца срока сборки 90 мин" in outbox.pending(db)[-1]["text"]
    assert outbox.zero_guard_held(db, "oz1", 40, 100, hold_id="h1", now=now.timestamp()) is not None
    assert "обнулила бы 40 из 100 выставленных карточек (40%)" in outbox.pending(db)[-1]["text"]


def test_a_moved_assembly_deadline_is_said_once_per_move_and_louder_when_earlier(db):
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    first, later, earlier = (now + timedelta(hours=h) for h in (24, 48, 6))
    db.execute("INSERT INTO orders(id, key, account, marketplace, native_id, number, stage, status, created_at,"
               " ship_by, ingested_ts, updated_ts) VALUES (1, 'oz1:P-1', 'oz1', 'ozon', 'P-1', 'P-1', 'reserved',"
               " 'reserved', ?, ?, 0, 0)", (now.isoformat(), earlier.isoformat()))
    assert checks.scan_order_events(db, now=now.timestamp()) == 0  # the first scan starts from now
    for was, new in ((first, later), (later, earlier)):
        db.execute("INSERT INTO order_events(order_id, ts, kind, detail, source) VALUES (1, 0, 'ship_by', ?,"
                   " 'marketplace')", (f"{was.isoformat()} → {new.isoformat()}",))
    assert checks.scan_order_events(db, now=now.timestamp()) == 2
    later_text, earlier_text = [r["text"] for r in outbox.pending(db)]
    assert later_text == "⏰ Площадка перенесла срок сборки заказа P-1 (oz1): собрать до 29.11.2026, 15:00" \
        " (было до 28.11.2026, 15:00)", later_text
    assert "на БОЛЕЕ РАННИЙ: собрать до 27.11.2026, 21:00 (было до 29.11.2026, 15:00)" in earlier_text, earlier_text
    assert {r["kind"] for r in outbox.pending(db)} == {"order_deadline_moved"}
    # the same move logged again (a second copy of the event): said once
    db.execute("INSERT INTO order_events(order_id, ts, kind, detail, source) VALUES (1, 0, 'ship_by', ?,"
               " 'marketplace')", (f"{later.isoformat()} → {earlier.isoformat()}",))
    assert checks.scan_order_events(db, now=now.timestamp()) == 0 and len(outbox.pending(db)) == 2
    # a first deadline given late (none was stored: "—"): nothing moved, nothing said
    db.execute("INSERT INTO order_events(order_id, ts, kind, detail, source) VALUES (1, 0, 'ship_by', ?,"
               " 'marketplace')", (f"— → {first.isoformat()}",))
    assert checks.scan_order_events(db, now=now.timestamp()) == 0 and len(outbox.pending(db)) == 2
