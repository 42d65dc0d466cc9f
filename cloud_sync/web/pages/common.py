"""What the manager's pages share: the page size and the page number of a list, the pager's query
strings, the account choices of a form, the 1C items a form offers and finding the one a person typed
(article, name or id), the 1C names of items. Imports no page module."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import request
from flask_babel import gettext as _

from cloud_sync.web.context import ctx
from marketplaces import profiles

PAGE_SIZE = 50


def page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def args_for(**fixed: Any) -> Callable[[int], str]:
    """A function page -> query string keeping the current filters (for the pager)."""
    def make(page: int) -> str:
        q = {k: v for k, v in request.args.items() if k != "page" and v}
        q.update({k: v for k, v in fixed.items() if v})
        q["page"] = str(page)
        return urlencode(q)
    return make


def accounts() -> list[tuple[str, str]]:
    """(account, "account (marketplace)") of every configured account."""
    known = profiles()
    return [(name, f"{name} ({known[a.marketplace].title if a.marketplace in known else a.marketplace})")
            for name, a in sorted(ctx().cfg.accounts.items())]


def item_names(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[str, str]]:
    """item id -> (1C article, 1C name): the one name an item has for the manager and the packer."""
    ids = list(dict.fromkeys(i for i in ids if i))
    if not ids:
        return {}
    rows = conn.execute(f"SELECT id, article, name FROM items WHERE id IN ({','.join('?' * len(ids))})", ids)
    return {r["id"]: (r["article"] or "", r["name"] or "") for r in rows}


def find_items(conn: sqlite3.Connection, typed: str, limit: int = 20) -> list[sqlite3.Row]:
    """1C items a field offers as you type (`/items/suggest`): the articles starting with what was typed,
    then the names holding it (article and name; the id stays behind the scenes)."""
    rows = conn.execute("SELECT id, article, name FROM items WHERE article LIKE ? ORDER BY article LIMIT ?",
                        (f"{typed}%", limit)).fetchall()
    if len(rows) < limit:
        seen = {r["id"] for r in rows}
        rows += [r for r in conn.execute("SELECT id, article, name FROM items WHERE name LIKE ? LIMIT ?",
                                         (f"%{typed}%", limit)) if r["id"] not in seen][: limit - len(rows)]
    return rows


def find_item(conn: sqlite3.Connection, typed: str) -> tuple[str, str]:
    """(item id, "") of what a person typed for an item: its 1C article, its name or its id; or ("", why
    not) in their language when none or several items fit."""
    found = conn.execute("SELECT id FROM items WHERE id=? UNION SELECT id FROM items WHERE article=?"
                         " UNION SELECT id FROM items WHERE name=? COLLATE NOCASE LIMIT 3",
                         (typed, typed, typed)).fetchall()
    if not found:
        found = conn.execute("SELECT id FROM items WHERE name LIKE ? LIMIT 3", (f"%{typed}%",)).fetchall()
    if not found:
        return "", _("no 1C item has this article or name: %(typed)s", typed=typed)
    if len(found) > 1:
        return "", _("several 1C items fit %(typed)s: choose one from the list", typed=typed)
    return found[0]["id"], ""


def sort_key() -> tuple[str, bool]:
    """The column a list is sorted by (`?sort=name`, `?sort=-name` descending) and whether descending."""
    raw = request.args.get("sort", "")
    return raw.lstrip("-"), raw.startswith("-")


def sort_href(column: str) -> str:
    """The query string that sorts the list by `column` (again: the other way), keeping the filters."""
    current, desc = sort_key()
    q = {k: v for k, v in request.args.items() if k not in ("page", "sort") and v}
    q["sort"] = f"-{column}" if current == column and not desc else column
    return "?" + urlencode(q)


def articles_for_ids(conn: sqlite3.Connection, rows: list[dict], field: str = "problem") -> None:
    """A stored text that names 1C items by their id (a GUID: «item 0d1f… at main») names them by the
    article a seller knows instead; GUIDs stay in the details."""
    words = {w.strip(",;:()'") for r in rows for w in str(r.get(field) or "").split()}
    words.discard("")
    if not words:
        return
    found = {}
    chosen = list(words)[:900]
    for r in conn.execute(f"SELECT id, article FROM items WHERE id IN ({','.join('?' * len(chosen))})", chosen):
        if r["article"]:
            found[r["id"]] = r["article"]
    if not found:
        return
    pattern = re.compile("|".join(re.escape(k) for k in sorted(found, key=len, reverse=True)))
    for r in rows:
        if r.get(field):
            r[field] = pattern.sub(lambda m: found[m.group(0)], r[field])
