"""An installation of several sellers in one `cloud serve`: the main seller's service at `/` and one
`CloudService` per seller of the registry (cloud_sync.tenants) at `/t/<id>/`, all on ONE waitress server.

`TenantHost(cfg).start()` builds the main seller's service and every seller's (each its own config, store,
account adapters, jobs, stock pusher, leases in its own store and site link on its own topic root), then
serves them through one WSGI dispatcher: a request for `/t/<id>/...` goes to that seller's app with
`SCRIPT_NAME` = `/t/<id>` (so its `url_for`, its redirects and its cookies' path stay under the prefix),
`/t/<id>` without the slash is redirected to it, an unknown seller gets a 404 page in the installation's
language, and everything else is the main seller's. The registry is looked at again every `RESCAN_S`: a
seller added meanwhile (`marketsync tenant add`) is served within seconds without a restart, one whose
folder is gone is stopped. At start a seller whose config is wrong stops the start (one line naming the
file and the key); found later, it is said in the log and looked at again when its file changes.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask
from waitress.server import create_server

from cloud_sync import tenants
from cloud_sync.config import CloudConfig
from cloud_sync.i18n import translations
from cloud_sync.service.cloud import CloudService, stop_http

log = logging.getLogger("cloud_sync.service.tenants")
RESCAN_S = 3.0  # how often the registry is looked at for sellers added or removed meanwhile
PREFIX = "/t/"


class TenantHost:
    def __init__(self, cfg: CloudConfig, *, instance: str = "") -> None:
        self.cfg = cfg
        self.instance = instance
        self.main = CloudService(cfg, instance=instance)
        self.db_path = self.main.db_path
        self.services: dict[str, CloudService] = {}
        self._apps: dict[str, Flask] = {}
        self._main_app: Flask | None = None
        self._failed: dict[str, float] = {}  # seller -> its config file's mtime when it last failed
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._scan_thread: threading.Thread | None = None
        self.url = ""

    @property
    def adapters(self) -> Any:
        return self.main.adapters

    def tenant_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._apps)

    def start(self) -> str:
        self._main_app = self.main.build()
        built: list[tuple[str, CloudService, Flask]] = []
        for tenant in tenants.ids(self.cfg):  # a wrong seller's config stops the start (ConfigError)
            built.append((tenant, *self._build(tenant)))
        self._server = create_server(self, host=self.cfg.host, port=self.cfg.port, threads=8,
                                     clear_untrusted_proxy_headers=False)
        self.url = f"http://{self.cfg.host}:{self._server.effective_port}"
        self.main.run()
        for tenant, service, app in built:
            service.run()
            with self._lock:
                self.services[tenant], self._apps[tenant] = service, app
        self._server_thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._server_thread.start()
        self._scan_thread = threading.Thread(target=self._scan, name="tenants-registry", daemon=True)
        self._scan_thread.start()
        log.info("serving the main seller and %s more: %s", len(built), ", ".join(t for t, _, _ in built) or "-")
        return self.url

    def _build(self, tenant: str) -> tuple[CloudService, Flask]:
        cfg = tenants.load(self.cfg, tenant)
        tenants.prepare_store(cfg)
        service = CloudService(cfg, instance=self.instance)
        return service, service.build()

    def _scan(self) -> None:
        while not self._stopping.wait(RESCAN_S):
            try:
                self.rescan()
            except Exception:  # noqa: BLE001 - looked at again at the next round
                log.exception("the registry of sellers was not read")

    def rescan(self) -> None:
        """Serve the sellers added since the last look, stop the ones whose folder is gone."""
        present = set(tenants.ids(self.cfg))
        with self._lock:
            known = set(self._apps)
        for tenant in sorted(present - known):
            stamp = self._stamp(tenant)
            if self._failed.get(tenant) == stamp:
                continue  # said once; looked at again when its file changes
            try:
                service, app = self._build(tenant)
                service.run()
            except Exception as exc:  # noqa: BLE001 - the others go on being served
                self._failed[tenant] = stamp
                log.error("seller %s is not served: %s", tenant, exc)
                continue
            self._failed.pop(tenant, None)
            with self._lock:
                self.services[tenant], self._apps[tenant] = service, app
            log.info("seller %s added: served at %s%s/", tenant, PREFIX, tenant)
        for tenant in sorted(known - present):
            with self._lock:
                service = self.services.pop(tenant)
                self._apps.pop(tenant)
            log.info("seller %s removed: no longer served", tenant)
            service.stop()

    def _stamp(self, tenant: str) -> float:
        try:
            return (Path(self.cfg.tenants_dir) / tenant / tenants.CONFIG).stat().st_mtime
        except OSError:
            return 0.0

    # ------------------------------------------------------------ the one WSGI app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if not (path == "/t" or path.startswith(PREFIX)):
            assert self._main_app is not None
            return self._main_app(environ, start_response)
        parts = path.split("/", 3)  # "", "t", id, the rest
        tenant = parts[2] if len(parts) > 2 else ""
        with self._lock:
            app = self._apps.get(tenant)
        if app is None:
            return self._unknown(tenant, start_response)
        root = environ.get("SCRIPT_NAME", "") + PREFIX + tenant
        if len(parts) == 3:  # /t/<id>: its start page is /t/<id>/
            query = environ.get("QUERY_STRING", "")
            start_response("308 Permanent Redirect", [("Location", root + "/" + (f"?{query}" if query else "")),
                                                       ("Content-Length", "0")])
            return [b""]
        inner = dict(environ)
        inner["SCRIPT_NAME"], inner["PATH_INFO"] = root, "/" + parts[3]
        return app(inner, start_response)

    def _unknown(self, tenant: str, start_response: Callable) -> Iterable[bytes]:
        t = translations(self.cfg.ui.language).gettext
        title = t("No such seller")
        text = t("There is no seller %(id)s on this installation.") % {"id": f"«{tenant}»"}
        body = (f'<!doctype html><html lang="{html.escape(self.cfg.ui.language)}"><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
                f'<p><a href="/">{html.escape(t("Back to the start page"))}</a></p></html>').encode()
        start_response("404 Not Found", [("Content-Type", "text/html; charset=utf-8"),
                                         ("Content-Length", str(len(body))), ("X-Content-Type-Options", "nosniff"),
                                         ("Content-Security-Policy", "default-src 'none'")])
        return [body]

    # ------------------------------------------------------------ health and stop

    def healthy(self) -> bool:
        """The one web server runs and the main seller's store answers (the systemd watchdog)."""
        return self._server_thread is not None and self._server_thread.is_alive() and self.main.healthy()

    def stop(self) -> None:
        self._stopping.set()
        stop_http(self._server, self._server_thread)
        if self._scan_thread is not None:
            self._scan_thread.join(RESCAN_S + 30)
        with self._lock:
            services = list(self.services.values())
            self.services.clear()
            self._apps.clear()
        for service in [*services, self.main]:
            service.stop()


__all__ = ["RESCAN_S", "TenantHost"]
