"""The running cloud: the web app (waitress), the site link, the stock pusher and the jobs, in one process.

`CloudService(cfg).start()` (= `build()`, its own HTTP server, `run()`: an installation of several sellers
builds each seller's service and serves their apps on one server, cloud_sync.service.tenants) opens (and
migrates) the database, opens the account adapters, syncs
warehouses and cards once in the background (unless `[cloud] sync_on_start = false`), starts the site
link with the site handlers (with `[link] share_group`: a member of the MQTT shared subscription in every
process, the sending part under the lease), the stock pusher, the jobs and the HTTP server; `stop()` stops them all
in the reverse order. `url` is the app's address once started.

Several processes may serve one store (cloud_sync.leases): each answers any web or API request (sessions,
CSRF tokens and the login throttle live in the database), and each job, stock sender and the site link
run in the one process holding their lease; a process that stops gives its leases back, one killed
loses them within seconds. What Settings stores through one process is put in use by the others within
`FOLLOW_S` (`accounts.follow_stored`).

An account whose credentials are to come from Settings (`credentials_secret`) and are not stored yet
waits (`waiting`, said in the log): everything else starts. Once they are entered, the account opens
and its jobs and stock sender start, and its warehouses and cards are read, without a restart.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from typing import Any

from flask import Flask
from waitress.server import create_server

from cloud_sync.access import secrets
from cloud_sync.config import CloudConfig
from cloud_sync.db import connect
from cloud_sync.leases import Leases
from cloud_sync.orders import after_handover, site_messages
from cloud_sync.schema import open_db
from cloud_sync.service import sync
from cloud_sync.service.accounts import AccountAdapters, SyncReport, follow_stored, open_with_settings
from cloud_sync.service.jobs import Jobs
from cloud_sync.service.pusher import Pusher
from cloud_sync.stock import push as stock_push
from cloud_sync.web.app import create_app
from sitelink import LinkConfig, SiteLink
from sitelink.link import topic_root

log = logging.getLogger("cloud_sync.service.cloud")
LINK_LEASE = "site-link"
FOLLOW_S = 5.0  # how often a process looks for what Settings stored through another one


def stop_http(server: Any, thread: threading.Thread | None) -> None:
    """Stop a waitress server: the requests in progress end, idle keep-alive connections close, no new one."""
    if server is not None:
        server.task_dispatcher.shutdown(cancel_pending=False, timeout=5)  # requests in progress end
        # an idle keep-alive connection would hold the loop open: each closes once flushed, by the loop's
        # own thread (closing a socket under its select fails it with EBADF), woken for it now
        for channel in list(server._map.values()):
            if hasattr(channel, "close_when_flushed"):
                channel.close_when_flushed = True
        server.pull_trigger()
        server.close()  # no new connection
    if thread is not None:
        thread.join(5)


# The cloud's threads mostly wait (HTTP answers, the store, their timers); one woken by an answer or an event
# (a sender whose zero push came back, a poll) gets the interpreter from a thread that is computing (a poll
# decoding a page of orders) after at most this long. Python's default is 5 ms, a whole step of the path from
# a sale to the zeros on every other marketplace.
SWITCH_INTERVAL_S = 0.001


class CloudService:
    def __init__(self, cfg: CloudConfig, *, db_path: str | None = None, instance: str = "") -> None:
        if db_path:
            cfg.db_path = db_path  # the webhooks and every other part read it from the config
        self.cfg = cfg
        self.db_path = cfg.db_path
        self.link: Any = None  # the link that sends (the `site-link` lease's), and receives when alone
        self.members_link: Any = None  # [link] share_group: this process's member of the group, always on
        self.instance = instance
        self.pusher: Pusher | None = None
        self.jobs: Jobs | None = None
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._sync_thread: threading.Thread | None = None
        self.url = ""
        self.adapters = AccountAdapters(cfg)
        self.startup: SyncReport | None = None
        self.waiting: list[str] = []  # accounts whose stored credentials are not entered yet
        self.leases: Leases | None = None
        self._link_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._follow_thread: threading.Thread | None = None
        self._stored: dict[str, float] = {}  # secrets.stamps: what Settings held when last looked at

    def start(self) -> str:
        """Build the parts, serve the app on its own HTTP server ([cloud] host/port), run the rest."""
        app = self.build()
        # the app decides which proxy headers to believe ([auth] trusted_proxies, cloud_sync/web/auth.py):
        # waitress must pass them on, not drop them (a proxied request would look like this box's own)
        self._server = create_server(app, host=self.cfg.host, port=self.cfg.port, threads=8,
                                     clear_untrusted_proxy_headers=False)
        self.url = f"http://{self.cfg.host}:{self._server.effective_port}"
        self.run()
        self._server_thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._server_thread.start()
        return self.url

    def build(self) -> Flask:
        """Every part made, none running yet: the store opened (and migrated), the adapters, the leases,
        the stock pusher, the site link, the jobs and the web app (returned: whoever serves it, this
        service's own server or an installation's host of several sellers, cloud_sync.service.tenants)."""
        conn = open_db(self.db_path)
        try:
            # credentials, the bot token and settings entered in Settings (encrypted at rest)
            adapters, self.waiting = open_with_settings(conn, self.cfg)
            self._stored = secrets.stamps(conn)
        finally:
            conn.close()
        # one shared holder: a token entered in Settings swaps the account's adapter for all of them at once
        self.adapters = AccountAdapters(self.cfg, adapters)
        self.leases = Leases(self.db_path, self._lease_count)
        self.pusher = Pusher(self.cfg, self.db_path, self.adapters, leases=self.leases)
        if self.cfg.link.enabled:
            self.link, self.members_link = self._make_links()
            receiver = self.members_link or self.link
            site_messages.register_site_handlers(receiver, self.cfg, wake=self.pusher.wake)
            after_handover.register_return_handlers(receiver, self.cfg, wake=self.pusher.wake)
        self.jobs = Jobs(self.cfg, self.db_path, self.adapters, link=self.link, wake_stock=self.pusher.wake,
                         leases=self.leases)
        self.jobs.add_defaults()
        self.adapters.when_added(self._account_added)
        return create_app(self.cfg, db_path=self.db_path, adapters=self.adapters, link=self.link,
                          pusher=self.pusher, jobs=self.jobs)

    def run(self) -> None:
        """Start what `build` made: the leases, the site link, the stock pusher, the first sync, the jobs
        and the settings follower (the web app is served by whoever `build` gave it to)."""
        assert self.leases is not None and self.pusher is not None and self.jobs is not None
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.leases.start()
        if self.members_link is not None:
            self.members_link.start()
        if self.link is not None:
            self._link_thread = threading.Thread(target=self._hold_link, name="site-link-lease", daemon=True)
            self._link_thread.start()
        self.pusher.start()
        if self.cfg.sync_on_start:
            self._sync_thread = threading.Thread(target=self._initial_sync, name="initial-sync", daemon=True)
            self._sync_thread.start()
            self._sync_thread.join(self.cfg.sync_wait_s)
        self.jobs.start()
        self._follow_thread = threading.Thread(target=self._follow_settings, name="settings-follower", daemon=True)
        self._follow_thread.start()

    def _make_links(self) -> tuple[SiteLink, SiteLink | None]:
        """The site link: one whole link, run by the process holding the `site-link` lease; with
        `[link] share_group`, that leased link only sends (the outbox, its acknowledgements, the sites'
        states, the cloud's presence) and every process receives through a member of the group."""
        lc = self.cfg.link
        common: dict[str, Any] = dict(role="cloud", db_path=self.db_path, host=lc.host, port=lc.port,
                                      password=lc.password or None, tls_ca=lc.tls_ca or None,
                                      keys_file=lc.keys_file or None,
                                      prefix=topic_root(self.cfg.tenant),  # a seller of several: its own tree
                                      connect=connect)  # the cloud's store, SQLite or PostgreSQL
        if not lc.share_group:
            return SiteLink(LinkConfig(username=lc.username or None, **common)), None
        tag = f"-{self.cfg.tenant}" if self.cfg.tenant else ""
        member_user = (lc.member_username or lc.username).replace("{instance}", self.instance) or None
        sender = SiteLink(LinkConfig(username=lc.username or None, part="send", share_group=lc.share_group,
                                     **common))
        member = SiteLink(LinkConfig(username=member_user, part="receive", share_group=lc.share_group,
                                     client_id=f"ms-cloud{tag}-in-{self.instance}" if self.instance else None, **common))
        return sender, member

    def _lease_count(self) -> int:
        """The leased jobs of this process (its fair share of them is counted from it)."""
        jobs = len(self.jobs.jobs) if self.jobs is not None else 0
        return jobs + (len(self.pusher.lease_names()) if self.pusher is not None else 0) + (self.link is not None)

    def _hold_link(self) -> None:
        """The site link runs in the one process holding the `site-link` lease: one client id, one
        persistent session, publishing the shared outbox that every process writes to. Without
        `[link] share_group` it is also the one consumer of the sites' traffic; with it, it only sends and
        every process's member link receives (`_make_links`)."""
        assert self.link is not None and self.leases is not None
        conn = connect(self.db_path)
        running = False
        try:
            while True:
                try:
                    here = self.leases.hold(conn, LINK_LEASE)
                except sqlite3.Error as exc:
                    log.warning("site link: lease not checked: %s", exc)
                    here = running  # a busy database changes nothing yet
                if here and not running:
                    log.info("the site link runs in this process")
                    self.link.start()
                elif running and not here:
                    log.info("the site link moved to another process")
                    self.link.stop()
                running = here
                if self._stopping.wait(self.leases.check_s):
                    break
        finally:
            if running:
                self.link.stop()
            conn.close()

    def _follow_settings(self) -> None:
        """What Settings stored through another cloud process on this store, put in use here too (every
        `FOLLOW_S`): the page answered by any process changes every process."""
        conn = connect(self.db_path)
        try:
            while not self._stopping.wait(FOLLOW_S):
                try:
                    self._stored = follow_stored(conn, self.cfg, self.adapters, self._stored)
                except Exception as exc:  # noqa: BLE001 - looked at again at the next round
                    log.warning("settings stored meanwhile not followed: %s", exc.__class__.__name__)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        finally:
            conn.close()

    def healthy(self) -> bool:
        """The web server runs (when it is this service's own) and the database answers (what the systemd
        watchdog is fed on)."""
        if self._server is not None and (self._server_thread is None or not self._server_thread.is_alive()):
            return False
        try:
            conn = connect(self.db_path)
            try:
                return conn.execute("SELECT 1").fetchone() is not None
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    def _account_added(self, name: str) -> None:
        """An account opened after the start (its credentials entered in Settings): its stock sender and
        jobs start, and its warehouses and cards are read in the background, as at a start."""
        if name in self.waiting:
            self.waiting.remove(name)
        if self.pusher is not None:
            self.pusher.add_account(name)
        if self.jobs is not None:
            self.jobs.add_account(name)
        threading.Thread(target=self._initial_sync, args=([name],), name=f"initial-sync-{name}", daemon=True).start()

    def _initial_sync(self, accounts: list[str] | None = None) -> None:
        conn = connect(self.db_path)
        try:
            adapters = self.adapters if accounts is None else {n: self.adapters[n] for n in accounts}
            report = sync.sync_cards(conn, self.cfg, adapters)
            for err in report.errors:
                log.warning("initial sync: %s", err)
            planned = stock_push.plan_all(conn, self.cfg)
            report.add(f"planned {planned.queued} stock pushes")
            if accounts is None:
                self.startup = report
            if self.pusher is not None:
                self.pusher.wake()
        except Exception:  # noqa: BLE001 - the service runs on; the jobs retry what they need
            log.exception("initial sync")
        finally:
            conn.close()

    def stop(self) -> None:
        # every part is told to stop first, then waited for: the jobs take no new round while the web stops
        self._stopping.set()
        if self.jobs is not None:
            self.jobs.stop(timeout=0)
        if self.pusher is not None:
            self.pusher.stop(timeout=0)
        stop_http(self._server, self._server_thread)
        if self.jobs is not None:
            self.jobs.stop()
        if self.pusher is not None:
            self.pusher.stop()
        if self._follow_thread is not None:
            self._follow_thread.join(10)
        if self._link_thread is not None:
            self._link_thread.join(15)
        if self.members_link is not None:
            self.members_link.stop()
        if self.leases is not None:
            self.leases.stop()  # the other processes take this one's jobs at once
        self.adapters.close_all()
