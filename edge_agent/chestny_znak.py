"""The site's client of Честный знак (ГИС МТ True API): is a scanned marking code allowed to ship?

Owns the one call the packing check makes, `POST /api/v3/true-api/cises/info` (a bearer token; the body a
JSON array of codes' identification parts, `?pg=` the product group when configured; the shape and its
sources: marketplaces/sandbox/chestny_znak_schemas/), and `MarkingRegistry.check`, which turns its answer
into a verdict: `ok`, `refused` with the reason in Russian (marking.registry_refusal), or `unchecked`
when Честный знак cannot be reached (a timeout, no network, 5xx, 429, 401, an answer that cannot be
read). Packing never waits on an outage: after one failure the register is not asked again for
`retry_after_s` (every code meanwhile is `unchecked` at once), and the site checks those codes later.

Plain urllib (the box installs no HTTP library for this); the token is never logged or shown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from edge_agent.tasks.marking import MarkingCode, RegistryCheck, registry_refusal

log = logging.getLogger("marketsync.edge.chestny_znak")
PATH = "/api/v3/true-api/cises/info"


class RegistryUnavailable(Exception):
    """Честный знак did not give a usable answer; the message says why (never the token)."""


class TrueApiClient:
    """`cises_info(codes)`: True API's public information about each code, in the order asked."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 2.0, product_group: str = "") -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        self.product_group = product_group

    def cises_info(self, codes: Sequence[str]) -> list[dict[str, Any]]:
        query = "?" + urllib.parse.urlencode({"pg": self.product_group}) if self.product_group else ""
        req = urllib.request.Request(self.url + PATH + query, data=json.dumps(list(codes)).encode("utf-8"),
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Accept": "application/json",
                                                             "Authorization": f"Bearer {self._token}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            what = {401: "токен не принят (401): обновите токен True API", 403: "нет доступа (403)",
                    429: "слишком много запросов (429)"}.get(exc.code, f"ошибка сервера (HTTP {exc.code})")
            raise RegistryUnavailable(f"Честный знак: {what}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailable(f"Честный знак недоступен: {reason}") from None
        try:
            rows = json.loads(raw)
        except ValueError:
            raise RegistryUnavailable("Честный знак: ответ не читается (не JSON)") from None
        if not isinstance(rows, list) or len(rows) != len(codes) or not all(isinstance(r, dict) for r in rows):
            raise RegistryUnavailable("Честный знак: ответ не по форме (нужен список по одному на код)")
        return rows


class MarkingRegistry:
    """The packing check's view of Честный знак: one verdict per code, never blocking on an outage."""

    def __init__(self, client: TrueApiClient, seller_inn: str, *, retry_after_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.seller_inn = seller_inn
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._down_until = 0.0
        self._down_reason = ""
        self._lock = threading.Lock()

    def check(self, code: MarkingCode) -> RegistryCheck:
        return self.check_many([code])[0]

    def check_many(self, codes: Sequence[MarkingCode]) -> list[RegistryCheck]:
        with self._lock:
            if self.clock() < self._down_until:
                return [RegistryCheck("unchecked", self._down_reason)] * len(codes)
        try:
            rows = self.client.cises_info([c.code_id for c in codes])
        except RegistryUnavailable as exc:
            with self._lock:
                self._down_until = self.clock() + self.retry_after_s
                self._down_reason = str(exc)
            log.warning("%s; codes are packed unchecked for %.0f s", exc, self.retry_after_s)
            return [RegistryCheck("unchecked", str(exc))] * len(codes)
        out = []
        for code, row in zip(codes, rows, strict=True):
            reason = registry_refusal(row, code, self.seller_inn)
            out.append(RegistryCheck("refused", reason) if reason else RegistryCheck("ok"))
        return out


def open_registry(url: str, token: str, seller_inn: str, *, timeout_s: float, retry_after_s: float,
                  product_group: str = "") -> MarkingRegistry | None:
    """The site's register check, or None when it is not configured (structure checks only)."""
    if not url:
        return None
    return MarkingRegistry(TrueApiClient(url, token, timeout_s=timeout_s, product_group=product_group),
                           seller_inn, retry_after_s=retry_after_s)
