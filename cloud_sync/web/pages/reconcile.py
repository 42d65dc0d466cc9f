"""Stocks → «Сверка»: the last three-way stock reconciliation (1C, the ledger with its moves in flight,
what the marketplaces show; cloud_sync/stock/reconcile.py) and a button that runs one now in the
background (the marketplaces' read-back takes a while: the page never waits for it). Owners and managers."""

from __future__ import annotations

import logging
import threading

from flask import Blueprint, redirect, render_template, url_for

from cloud_sync.db import connect
from cloud_sync.service import sync
from cloud_sync.stock import reconcile
from cloud_sync.web.auth import require
from cloud_sync.web.context import ctx, get_db

bp = Blueprint("reconcile", __name__)
log = logging.getLogger("cloud_sync.web.pages.reconcile")

_RUNNING: set[str] = set()  # database paths with a reconciliation under way
_LOCK = threading.Lock()


@bp.get("/stocks/reconcile")
@require("owner", "manager")
def index():
    with _LOCK:
        running = ctx().db_path in _RUNNING
    return render_template("cloud/reconcile.html", active="stocks", last=reconcile.last(get_db()), running=running)


@bp.post("/stocks/reconcile")
@require("owner", "manager")
def run_now():
    c = ctx()
    with _LOCK:
        if c.db_path not in _RUNNING:
            _RUNNING.add(c.db_path)
            threading.Thread(target=_run, args=(c.cfg, c.db_path, c.adapters), daemon=True,
                             name="reconcile").start()
    return redirect(url_for("reconcile.index"), 303)


def _run(cfg, db_path: str, adapters) -> None:
    conn = connect(db_path)
    try:
        sync.reconcile_stock(conn, cfg, dict(adapters), alert=True)
    except Exception:  # noqa: BLE001 - shown as "no result"; the log has the cause
        log.exception("reconciliation failed")
    finally:
        conn.close()
        with _LOCK:
            _RUNNING.discard(db_path)
