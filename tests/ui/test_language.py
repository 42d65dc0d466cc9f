"""The language: cloud.toml's `[ui] language` for anyone who has not chosen, each user's own choice kept
with the user, Russian plural forms, and one way each of writing money, numbers and dates per language."""

from __future__ import annotations

from datetime import UTC, datetime

from cloud_sync import i18n
from cloud_sync.catalog import cards as catalog
from cloud_sync.web.app import create_app
from marketplaces.base import Card

from .conftest import form_token, login


def test_the_config_language_is_the_default_and_each_user_keeps_their_own(cloud):
    _, conn, cfg = cloud
    cfg.ui.language = "en"
    app = create_app(cfg)
    masha, olga = app.test_client(), app.test_client()
    assert login(masha, "masha").status_code == 302 and login(olga, "olga").status_code == 302
    page = masha.get("/orders").text
    assert '<html lang="en">' in page and "<h1>Orders</h1>" in page
    r = masha.post("/language", data={"csrf_token": form_token(page), "language": "ru", "back": "/orders"})
    assert r.status_code == 302 and r.headers["Location"] == "/orders"
    assert "<h1>Заказы</h1>" in masha.get("/orders").text
    assert "<h1>Orders</h1>" in olga.get("/orders").text  # another user: still the config's language
    again = app.test_client()
    login(again, "masha")
    assert "<h1>Заказы</h1>" in again.get("/orders").text  # kept with the user, not the browser
    r = masha.post("/language", data={"csrf_token": form_token(page), "language": "xx", "back": "//evil.example"})
    assert r.headers["Location"] == "/" and "<h1>Заказы</h1>" in masha.get("/orders").text


def test_russian_plural_forms(as_user, cloud):
    _, conn, _ = cloud
    c = as_user("masha")
    for n, words in ((1, "1 карточка"), (2, "2 карточки"), (5, "5 карточек"), (11, "11 карточек"),
                     (21, "21 карточка"), (22, "22 карточки")):
        conn.execute("DELETE FROM cards")
        catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id=str(i), offer_id=f"A-{i}", title="Кружка")
                                                          for i in range(n)])
        assert words + "," in c.get("/products").text, words


def test_one_format_each_for_money_numbers_and_dates():
    assert i18n.money(38780, "ru") == "38\xa0780\xa0₽" and i18n.money("62782.5", "ru") == "62\xa0782,50\xa0₽"
    assert i18n.money(38780, "en") == "38,780\xa0₽" and i18n.money("4390.0", "ru") == "4\xa0390\xa0₽"
    assert i18n.number(1234567, "ru") == "1\xa0234\xa0567" and i18n.number("62782.5", "en") == "62,782.5"
    moment = datetime(2026, 11, 27, 20, 30, tzinfo=UTC)
    assert i18n.when(moment, "ru", "Europe/Moscow") == "27.11.2026, 23:30"
    assert i18n.when(moment.timestamp(), "ru", "Europe/Moscow") == i18n.when("2026-11-27T20:30:00Z", "ru")
    assert i18n.when(moment, "en", "Europe/Moscow") == "11/27/26, 11:30\u202fPM"
    assert i18n.day("2026-11-27", "ru") == "27.11.2026"


def test_a_user_named_in_cyrillic_is_added_and_logs_in(as_user, cloud):
    app = cloud[0]
    owner = as_user("olga")
    r = owner.post("/settings/users", data={"csrf_token": form_token(owner.get("/settings").text), "name": "Иван",
                                            "password": "пароль Ивана 123", "role": "packer"})
    assert r.status_code == 200 and "пользователь Иван добавлен" in r.text
    c = app.test_client()
    page = c.get("/login")
    r = c.post("/login", data={"name": "Иван", "password": "пароль Ивана 123", "csrf_token": form_token(page.text),
                               "next": "/orders"})
    assert r.status_code == 302 and "Иван (сборщик)" in c.get("/orders").text
    r = owner.post("/settings/users", data={"csrf_token": form_token(owner.get("/settings").text), "name": "Иван Петров",
                                            "password": "пароль Ивана 123", "role": "packer"})
    assert r.status_code == 400 and "имя пользователя — от 2 до 64 букв" in r.text  # a space is still refused


def test_the_warehouse_box_is_never_called_a_marketplace():
    """«Площадка» is the seller's word for a marketplace; a warehouse box (a site) is «склад» or «пункт».
    The catalog's translations of texts about a site, and every Russian text in the code that names a
    site, keep to that (the hand-over message read «площадка site-1»)."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    po = (root / "web/translations/ru/LC_MESSAGES/messages.po").read_text(encoding="utf-8")
    wrong = []
    for m in re.finditer(r'msgid ((?:"[^\n]*"\n)+)msgstr ((?:"[^\n]*"\n)+)', po):
        said, ru = m.group(1), m.group(2)
        if re.search(r"\bsites?\b", said) and "marketplace" not in said and "площадк" in ru.lower():
            wrong.append(said.strip())
    for folder in ("cloud_sync", "edge_agent", "sitelink", "marketsync"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.JoinedStr):
                    parts = [ast.unparse(v) if isinstance(v, ast.FormattedValue) else str(v.value)
                             for v in node.values]
                    text = "".join(parts)
                    if re.search(r"площадк\w*\s*\{[^}]*site", text, re.I) or (
                            "site" in text and re.search(r"на площадке|недостач\w* на площадке", text)):
                        wrong.append(f"{path.relative_to(root)}:{node.lineno}")
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(
                        r"недостач\w* на площадке|на площадке не нашли|распечатайте на площадке|ни одна площадка",
                        node.value):
                    wrong.append(f"{path.relative_to(root)}:{node.lineno}")
    assert wrong == []
