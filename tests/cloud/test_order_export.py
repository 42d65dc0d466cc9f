"""`marketsync orders export`: every order with marketplace, account, order id, status, deadline, lines,
site and the time of each status — JSON Lines, CSV (`;`, UTF-8 with BOM) and XLSX with real dates."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook

from cloud_sync.db import transaction
from cloud_sync.orders import desk, export, intake, site_messages
from marketsync.cli import main as marketsync
from sitelink.envelope import Envelope

from .conftest import card_id, order, seed


class _Registry:
    def __init__(self):
        self.handlers = {}

    def on(self, msg_type, handler):
        self.handlers[msg_type] = handler


@pytest.fixture
def shop(conn, cfg, db_path, tmp_path):
    items = seed(conn, 3)
    reg = _Registry()
    site_messages.register_site_handlers(reg, cfg)
    o = order("wb", "1001", card_id("wb", 1), qty=2, ship_in_h=4)
    o.created_at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    intake.ingest(conn, cfg, [o, order("oz", "P-7", card_id("oz", 2), ship_in_h=2),
                              order("ym", "Y-9", card_id("ym", 3), ship_in_h=8)])
    packed_at = datetime.now(UTC) + timedelta(seconds=2)
    with transaction(conn):
        reg.handlers["task_progress"](conn, Envelope(
            id="01EXPORT0000000000000000001", site="site-1", seq=1, type="task_progress",
            ts=packed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            body={"task_id": "pick-wb:1001", "order_id": "wb:1001", "state": "packed"}))
        desk.run(conn, cfg, "cancel", ["ym:Y-9"], by="anna", reason="покупатель передумал")
    config = tmp_path / "cloud.toml"
    config.write_text(f'[cloud]\ndb_path = "{db_path}"\n')
    return items, config, packed_at


def test_jsonl_has_every_order_with_its_lines_and_status_times(shop, capsys):
    items, config, packed_at = shop
    assert marketsync(["orders", "export", "--config", str(config)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["order_id"] for r in rows] == ["P-7", "1001", "Y-9"]  # by deadline
    wb = rows[1]
    assert (wb["marketplace"], wb["account"], wb["status"], wb["site"]) == ("wildberries", "wb", "packed", "site-1")
    assert wb["lines"][0]["article"] == items[0].article and wb["lines"][0]["quantity"] == 2
    assert wb["status_times"]["new"] == "2026-12-01T09:00:00+00:00"
    assert datetime.fromisoformat(wb["status_times"]["packed"]).timestamp() == pytest.approx(packed_at.timestamp(), abs=1)
    assert set(wb["status_times"]) == {"new", "reserved", "packed"}
    assert "cancelled" in rows[2]["status_times"] and rows[2]["status"] == "cancelled"


def test_csv_is_semicolon_separated_utf8_with_bom(shop, tmp_path):
    _, config, _ = shop
    out = tmp_path / "o.csv"
    assert marketsync(["orders", "export", "--config", str(config), "--format", "csv", "--out", str(out)]) == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:5] == ["Маркетплейс", "Кабинет", "Номер заказа на маркетплейсе", "Номер", "Статус"]
    assert [r[2] for r in rows[1:]] == ["P-7", "1001", "Y-9"]
    assert rows[2][4] == "упакован" and rows[3][4] == "отменён"


def test_xlsx_has_real_dates(shop, tmp_path):
    _, config, _ = shop
    out = tmp_path / "o.xlsx"
    assert marketsync(["orders", "export", "--config", str(config), "--format", "xlsx", "--out", str(out)]) == 0
    ws = load_workbook(out).active
    header = [c.value for c in ws[1]]
    deadline = header.index("Дедлайн сборки (UTC)")
    created = header.index("Создан (UTC)")
    row = [c.value for c in ws[3]]
    assert row[2] == "1001" and isinstance(row[deadline], datetime)
    assert row[created] == datetime(2026, 12, 1, 9, 0)


def test_a_bad_format_or_place_is_said_in_russian(shop, tmp_path, capsys, conn, cfg):
    _, config, _ = shop
    assert marketsync(["orders", "export", "--config", str(config), "--format", "csv", "--out",
                       str(tmp_path / "no" / "such" / "dir" / "o.csv")]) == 1
    assert "не удалось записать" in capsys.readouterr().err
    with pytest.raises(export.ExportError, match="формат «pdf» не поддерживается"):
        export.write(conn, cfg, "pdf", tmp_path / "x.pdf")
