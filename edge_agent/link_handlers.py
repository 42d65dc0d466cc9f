"""The site's end of the link: how the box connects to the broker, and what it does with each message
the cloud sends down (a pick task, a cancel, a label, the catalog, a courier's hand-over and its documents, a return to expect).

Each handler applies its message with the task logic (`edge_agent.tasks.inbox`) inside the link's own
transaction, which also records the message as received; a message that can never be applied is
rejected (dead-lettered, with the reason). Once the transaction has committed, the page and the print
queue hear of it; a new pick task, a hand-over and a return to expect are also told to the site's listeners
at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from edge_agent import store
from edge_agent.config import EdgeConfig
from edge_agent.tasks import inbox
from edge_agent.tasks.common import Send
from sitelink import Envelope, LinkConfig, Reject, SiteLink
from sitelink.link import topic_root


def open_link(cfg: EdgeConfig) -> SiteLink:
    """The site's link to the cloud, on the site's database (not started)."""
    m = cfg.mqtt
    # the link's own connection commits with synchronous=FULL too: an applied (and then acknowledged)
    # message survives a power cut
    return SiteLink(LinkConfig(role="site", site_id=cfg.site_id, db_path=cfg.db_path, host=m.host,
                               port=m.port, username=m.username, password=cfg.mqtt_password(),
                               tls_ca=m.tls_ca, keys_file=m.keys_file, connect=store.open_conn,
                               prefix=topic_root(m.tenant)))


@dataclass
class DownHandlers:
    """The handlers of the messages that come down, bound to what they need of the site."""

    send: Send  # the site's outbox write (a cancel of packed goods sends their return up)
    warehouse: str
    after_commit: Callable[..., None]  # (what, **info): tell the page and the printer once committed
    tell: Callable[..., None]  # (event, **info): tell the site's listeners now, inside the transaction

    def register(self, link: SiteLink) -> None:
        link.on("pick_task", self.pick_task)
        link.on("cancel_task", self.cancel_task)
        link.on("task_deadline", self.task_deadline)
        link.on("label", self.label)
        link.on("catalog", self.catalog)
        link.on("handover", self.handover)
        link.on("reservation", self.reservation)
        link.on("handover_document", self.handover_document)
        link.on("return_expected", self.return_expected)

    def pick_task(self, conn: sqlite3.Connection, env: Envelope) -> None:
        try:
            new = inbox.apply_pick_task(conn, env.body)
        except inbox.Unusable as exc:
            _reject(exc)
        self.after_commit("task", task_id=env.body["task_id"])
        if new:
            self.tell("new_task", task_id=env.body["task_id"])

    def cancel_task(self, conn: sqlite3.Connection, env: Envelope) -> None:
        inbox.apply_cancel(conn, self.send, env.body, self.warehouse)
        self.after_commit("task", task_id=env.body["task_id"])

    def task_deadline(self, conn: sqlite3.Connection, env: Envelope) -> None:
        try:
            moved = inbox.apply_deadline(conn, env.body)
        except inbox.Unusable as exc:
            _reject(exc)
        if moved:
            self.after_commit("task", task_id=env.body["task_id"])

    def label(self, conn: sqlite3.Connection, env: Envelope) -> None:
        try:
            inbox.apply_label(conn, env.body)
        except inbox.Unusable as exc:
            _reject(exc)
        self.after_commit("label", order_id=env.body["order_id"])

    def catalog(self, conn: sqlite3.Connection, env: Envelope) -> None:
        try:
            inbox.apply_catalog(conn, env.body, self.send, self.warehouse)
        except inbox.Unusable as exc:
            _reject(exc)
        self.after_commit("catalog")

    def handover(self, conn: sqlite3.Connection, env: Envelope) -> None:
        try:
            inbox.apply_handover(conn, env.body)
        except inbox.Unusable as exc:
            _reject(exc)
        self.after_commit("handover")
        self.tell("handover", handover_id=env.body["handover_id"])

    def handover_document(self, conn: sqlite3.Connection, env: Envelope) -> None:
        try:
            inbox.apply_handover_document(conn, env.body)
        except inbox.Unusable as exc:
            _reject(exc)
        self.after_commit("document", handover_id=env.body["handover_id"])

    def return_expected(self, conn: sqlite3.Connection, env: Envelope) -> None:
        try:
            inbox.apply_return_expected(conn, env.body)
        except inbox.Unusable as exc:
            _reject(exc)
        self.after_commit("return")
        self.tell("return", return_id=env.body["return_id"])

    def reservation(self, conn: sqlite3.Connection, env: Envelope) -> None:
        """Reservations are the cloud's business; the site takes them and does nothing."""


def _reject(exc: Exception) -> NoReturn:
    raise Reject(str(exc)) from exc

