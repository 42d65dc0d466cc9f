"""Telegram is finished on the Settings page: the bot token, the chat, and «Проверить», which sends a test
message through the Bot API (a local stand-in over real HTTP) and shows what it answered."""

from __future__ import annotations

from cloud_sync.access import secrets
from cloud_sync.alerts import outbox
from cloud_sync.config import parse_config
from cloud_sync.config_sections import AlertsConfig

from .conftest import form_token

TOKEN = "123456789:AAF-secret-settings-token-never-shown"


def test_the_chat_is_entered_and_checked_with_a_test_message(as_user, cloud, bot_api_for, monkeypatch):
    monkeypatch.setenv(secrets.BOT_TOKEN_ENV, "")  # restored after the test: the page sets it for the process
    _, conn, cfg = cloud
    bot = bot_api_for(TOKEN)
    cfg.alerts = AlertsConfig(base_url=bot.url)  # the Bot API's address; no chat, no token yet
    owner = as_user("olga")
    page = owner.get("/settings").text
    r = owner.post("/settings/telegram", data={"csrf_token": form_token(page), "bot_token": TOKEN})
    assert r.status_code == 200 and "уже используется" in r.text
    r = owner.post("/settings/telegram/test", data={"csrf_token": form_token(page)})
    assert r.status_code == 400 and "сначала сохраните токен бота и чат" in r.text and not bot.requests
    r = owner.post("/settings/telegram/chat", data={"csrf_token": form_token(page), "chat_id": "my chat"})
    assert r.status_code == 400 and 'id="err-chat_id"' in r.text and 'value="my chat"' in r.text
    r = owner.post("/settings/telegram/chat", data={"csrf_token": form_token(page), "chat_id": "-100123"})
    assert r.status_code == 200 and "чат -100123 сохранён" in r.text
    r = owner.post("/settings/telegram/test", data={"csrf_token": form_token(page)})
    assert r.status_code == 200 and "Telegram ответил: ok" in r.text
    assert bot.requests[-1][1]["chat_id"] == "-100123" and "проверочное сообщение" in bot.requests[-1][1]["text"]
    bot.script.append((400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}))
    r = owner.post("/settings/telegram/test", data={"csrf_token": form_token(page)})
    assert r.status_code == 502 and "Bad Request: chat not found" in r.text and TOKEN not in r.text
    restarted = parse_config({"cloud": {"db_path": cfg.db_path}})  # no [alerts] in the file
    secrets.apply_to_config(conn, restarted)
    assert restarted.alerts is not None and restarted.alerts.chat_id == "-100123"  # kept across a restart


def test_more_chats_each_take_the_alerts_ticked_for_them(as_user, cloud, bot_api_for, monkeypatch):
    monkeypatch.setenv(secrets.BOT_TOKEN_ENV, "")
    _, conn, cfg = cloud
    bot = bot_api_for(TOKEN)
    cfg.alerts = AlertsConfig(base_url=bot.url)
    owner = as_user("olga")
    page = owner.get("/settings").text
    owner.post("/settings/telegram", data={"csrf_token": form_token(page), "bot_token": TOKEN})
    owner.post("/settings/telegram/chat", data={"csrf_token": form_token(page), "chat_id": "-100123"})
    r = owner.post("/settings/telegram/chats", data={"csrf_token": form_token(page), "new_chat_id": "склад",
                                                     "new_title": "Склад"})
    assert r.status_code == 400 and 'id="err-new_chat_id"' in r.text and 'id="err-kinds"' in r.text
    assert 'value="Склад"' in r.text  # what was typed stays
    r = owner.post("/settings/telegram/chats", data={"csrf_token": form_token(page), "new_chat_id": "-100777",
                                                     "new_title": "Склад", "kinds": ["order_new", "order_deadline"]})
    assert r.status_code == 200 and "в чат Склад идут: новые заказы, сроки сборки" in r.text
    outbox.enqueue(conn, "order_new", "k1", "новый заказ")
    outbox.enqueue(conn, "price_rule", "k2", "правило цен")  # no chat ticked it: the main chat
    assert sorted((a["kind"], a["chat_id"]) for a in outbox.pending(conn)) == [("order_new", "-100777"),
                                                                               ("price_rule", "")]
    settings = outbox.AlertSettings.from_config(cfg.alerts)
    outbox.deliver(conn, outbox.sender_for(settings), settings, sleep=lambda s: None)
    assert {(b["chat_id"], b["text"]) for _path, b in bot.requests} == {("-100777", "новый заказ"),
                                                                       ("-100123", "правило цен")}
    r = owner.post("/settings/telegram/test", data={"csrf_token": form_token(page), "chat_id": "-100777"})
    assert r.status_code == 200 and "в чате -100777" in r.text and bot.requests[-1][1]["chat_id"] == "-100777"
    r = owner.post("/settings/telegram/chats/remove", data={"csrf_token": form_token(page), "chat_id": "-100777"})
    assert r.status_code == 200 and outbox.route(conn, "order_new") == [""]
