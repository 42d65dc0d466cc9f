"""`marketsync cloud push-urls`: per account whose marketplace pushes, the URL(s) the seller enters in the
cabinet — Ozon's one …/notification, Yandex.Market's base (its Notification API appends /notification),
Megamarket's order/new and order/cancel — from [cloud] public_url, with the push token, and where in the
cabinet; warnings when public_url is empty or an account has no push token. The printed URLs are the
ones the running endpoint takes: pushes to exactly them are answered 200 over real HTTP (real SQLite)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from cloud_sync import db as cloud_db
from cloud_sync.config import load_config
from cloud_sync.i18n import service_when
from marketsync.cli import main as marketsync

ACCOUNTS = '''
[accounts.oz-main]
marketplace = "ozon"
base_url = "http://127.0.0.1:9"
credentials = { "Client-Id" = "15", "Api-Key" = "k", push_token = "oz-push-token-1" }
options = { push_sources = ["127.0.0.0/8"] }

[accounts.ym-main]
marketplace = "yandex_market"
base_url = "http://127.0.0.1:9"
credentials = { "Api-Key" = "k", push_token = "ym-push-token-2" }
options = { business_id = 1, campaign_id = 2, push_sources = ["127.0.0.0/8"] }

[accounts.mm-main]
marketplace = "megamarket"
base_url = "http://127.0.0.1:9"
credentials = { token = "k", push_token = "mm-push-token-3" }
options = { merchant_id = 7, shipping_point = 8 }

[accounts.mm-new]
marketplace = "megamarket"
base_url = "http://127.0.0.1:9"
credentials = { token = "k" }
options = { merchant_id = 9, shipping_point = 8 }

[accounts.wb-main]
marketplace = "wildberries"
base_url = "http://127.0.0.1:9"
credentials = { Authorization = "k" }
'''


def _config(tmp_path: Path, public_url: str | None) -> Path:
    path = tmp_path / "cloud.toml"
    line = "" if public_url is None else f'public_url = "{public_url}"\n'
    path.write_text(f'[cloud]\ndb_path = "{tmp_path / "cloud.sqlite"}"\nport = 8111\n{line}{ACCOUNTS}', "utf-8")
    return path


def _blocks(out: str) -> dict[str, list[str]]:
    """The printed lines under each account's header line ("<account> (<marketplace>):")."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        head = re.match(r"^(\S+) \(.+\):$", line)
        if head:
            current = blocks.setdefault(head.group(1), [])
        elif current is not None:
            current.append(line.strip())
    return blocks


def test_push_urls_prints_what_each_cabinet_takes(tmp_path, capsys, caplog) -> None:
    caplog.set_level("DEBUG")
    base = "https://seller.example.ru"
    assert marketsync(["cloud", "push-urls", "--config", str(_config(tmp_path, base + "/"))]) == 0
    printed = capsys.readouterr()
    blocks = _blocks(printed.out)
    assert set(blocks) == {"oz-main", "ym-main", "mm-main", "mm-new"}  # Wildberries does not push
    urls = {name: [x for x in lines if x.startswith("http")] for name, lines in blocks.items()}
    assert urls["oz-main"] == [f"{base}/push/ozon/oz-main/oz-push-token-1/notification"]  # ONE URL
    assert urls["ym-main"] == [f"{base}/push/yandex_market/ym-main/ym-push-token-2"]  # Market appends /notification
    assert urls["mm-main"] == [f"{base}/push/megamarket/mm-main/mm-push-token-3/order/new",
                               f"{base}/push/megamarket/mm-main/mm-push-token-3/order/cancel"]
    where = {name: next(x for x in lines if x.startswith("где ввести:")) for name, lines in blocks.items()}
    assert "Настройки → Уведомления" in where["oz-main"] and "Push-уведомления" in where["oz-main"]
    assert "API-уведомления" in where["ym-main"] and "/notification Маркет допишет" in where["ym-main"]
    assert "order/new" in where["mm-main"] and "order/cancel" in where["mm-main"]
    assert all("уведомлений ещё не было" in lines for lines in blocks.values())
    # public_url is set: no warning of it; the account without a push token is named, with how to set one
    assert "public_url" not in printed.err
    assert "mm-new" in printed.err and "нет токена уведомлений" in printed.err and "credentials_file" in printed.err
    assert "oz-main" not in printed.err and "<push_token>" in "".join(blocks["mm-new"])
    assert "oz-push-token-1" not in caplog.text and "mm-push-token-3" not in caplog.text  # printed, never logged


def test_without_public_url_it_says_marketplaces_cannot_reach_the_local_address(tmp_path, capsys) -> None:
    assert marketsync(["cloud", "push-urls", "--config", str(_config(tmp_path, None))]) == 0
    printed = capsys.readouterr()
    assert "http://127.0.0.1:8111/push/ozon/oz-main/oz-push-token-1/notification" in printed.out
    assert "public_url" in printed.err and "http://127.0.0.1:8111" in printed.err
    assert "не достучаться" in printed.err


def test_a_push_to_exactly_the_printed_url_is_taken_by_the_running_endpoint(tmp_path, capsys,
                                                                           receiver_factory) -> None:
    """The cloud's push endpoints built as the service builds them from the same cloud.toml, served over
    real HTTP; public_url is where they listen; Ozon's TYPE_PING and Market's PING to what was printed."""
    cfg = load_config(_config(tmp_path, None))
    receiver = receiver_factory([s.account for s in cfg.accounts.values()])
    config = _config(tmp_path, receiver.url)
    assert marketsync(["cloud", "push-urls", "--config", str(config)]) == 0
    urls = {name: [x for x in lines if x.startswith("http")] for name, lines in _blocks(capsys.readouterr().out).items()}
    [ozon] = urls["oz-main"]
    ping = httpx.post(ozon, content=b'{"message_type": "TYPE_PING", "time": "2026-12-07T10:00:00Z"}', timeout=10)
    assert ping.status_code == 200 and set(ping.json()) == {"version", "name", "time"}, ping.text
    [market] = urls["ym-main"]
    assert httpx.post(market + "/notification", content=b'{"notificationType": "PING"}', timeout=10).status_code == 200
    assert httpx.post(ozon.replace("oz-push-token-1", "x"), content=b"{}", timeout=10).status_code == 403
    # the checks are printed beside the last notification (Megamarket's accounts were not checked)
    assert marketsync(["cloud", "push-urls", "--config", str(config)]) == 0
    blocks = _blocks(capsys.readouterr().out)
    conn = cloud_db.connect(receiver.db_path)
    try:
        pings = dict(conn.execute("SELECT account, received_at FROM push_pings"))
    finally:
        conn.close()
    assert set(pings) == {"oz-main", "ym-main"}
    for name in ("oz-main", "ym-main"):
        assert f"последняя проверка связи: {service_when(pings[name])}" in blocks[name], blocks[name]
        assert "уведомлений ещё не было" in blocks[name]  # a check is no notification
    assert "проверки связи ещё не было" in blocks["mm-main"]


def test_a_seller_of_several_gets_the_installations_address_and_its_own_prefix(tmp_path, capsys,
                                                                             monkeypatch) -> None:
    """[cloud] public_url is the installation's (a seller's own cloud.toml may not set it); a seller's push
    URLs live under /t/<id>/ (cloud_sync.service.tenants), and `$MARKETSYNC_TENANT` picks the seller."""
    from cloud_sync import tenants

    main_file = tmp_path / "cloud.toml"
    main_file.write_text('[cloud]\ndb_path = "main/cloud.sqlite"\npublic_url = "https://ms.example.ru"\n'
                         '[tenants]\n[link]\nenabled = false\n', "utf-8")
    made = tenants.add(load_config(main_file), "lavka", admin="boss")
    conf = made.tenant.folder / "cloud.toml"
    text = conf.read_text("utf-8")
    conf.write_text(text + '\n[accounts.oz-lavka]\nmarketplace = "ozon"\nbase_url = "http://127.0.0.1:9"\n'
                    'credentials = { "Client-Id" = "15", "Api-Key" = "k", push_token = "lavka-token" }\n', "utf-8")
    monkeypatch.setenv("MARKETSYNC_TENANT", "lavka")
    assert marketsync(["cloud", "push-urls", "--config", str(main_file)]) == 0
    printed = capsys.readouterr()
    assert _blocks(printed.out)["oz-lavka"][0] == "https://ms.example.ru/t/lavka/push/ozon/oz-lavka/lavka-token/notification"
    assert "public_url" not in printed.err
    conf.write_text(text.replace("[cloud]\n", '[cloud]\npublic_url = "https://other.example.ru"\n'), "utf-8")
    assert marketsync(["cloud", "push-urls", "--config", str(main_file)]) == 2
    assert "cloud.public_url: is the installation's setting" in capsys.readouterr().err
