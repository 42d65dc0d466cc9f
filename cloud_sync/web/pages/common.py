"""What the manager's pages share: the page size and the page number of a list, the pager's query
strings, the account choices of a form. Imports no page module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import request

from cloud_sync.web.context import ctx

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
    return [(name, f"{name} ({a.marketplace})") for name, a in sorted(ctx().cfg.accounts.items())]
