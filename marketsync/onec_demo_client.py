"""The demo's 1C: the client side of the CommerceML "exchange with site" protocol, as 1C runs it.

Only what the demo needs: send a balances package mid-shift (`type=catalog`: `checkauth`, `init`, the file
in one chunk, `import` until success), and in the evening log in (Basic auth → cookie), ask for the orders
(`type=sale&mode=query`), count the «Заказ товара» documents, and confirm them (`mode=success`). Plain
HTTP (urllib); it knows nothing of the cloud's internals.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


class OneCExchange:
    def __init__(self, url: str, login: str, password: str, timeout: float = 30.0) -> None:
        self.url = url
        self.basic = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
        self.timeout = timeout
        self.cookie = ""

    def call(self, mode: str, kind: str = "sale", *, auth: bool = False, filename: str = "",
             data: bytes | None = None) -> bytes:
        params = {"type": kind, "mode": mode}
        if filename:
            params["filename"] = filename
        query = urllib.parse.urlencode(params)
        req = urllib.request.Request(f"{self.url}?{query}", data=data, method="POST" if data is not None else "GET")
        if auth:
            req.add_header("Authorization", self.basic)
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise OSError(f"1C exchange {mode}: HTTP {exc.code} {exc.read()[:200]!r}") from None

    def login(self, kind: str) -> None:
        answer = self.call("checkauth", kind, auth=True).decode("utf-8", "replace").splitlines()
        if not answer or answer[0] != "success":
            raise OSError(f"1C exchange refused the login: {' '.join(answer)[:200]}")
        self.cookie = f"{answer[1]}={answer[2]}"
        self.call("init", kind)

    def send_catalog_file(self, name: str, data: bytes, timeout_s: float = 60.0) -> str:
        """Upload one CommerceML file and have it imported; 1C's last answer ("success…")."""
        self.login("catalog")
        self.call("file", "catalog", filename=name, data=data)
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self.call("import", "catalog", filename=name).decode("utf-8", "replace")
            if not reply.startswith("progress") or time.monotonic() > deadline:
                return reply.strip()
            time.sleep(0.2)

    def take_orders(self) -> tuple[int, int]:
        """checkauth → init → query → success → query again; the numbers of order documents received the
        first time and the second time (0 when success marked them delivered)."""
        self.login("sale")
        first = self.query()
        reply = self.call("success").decode("utf-8", "replace").strip()
        if not reply.startswith("success"):
            raise OSError(f"1C exchange did not accept success: {reply[:200]}")
        return first, self.query()

    def query(self) -> int:
        root = ET.fromstring(self.call("query"))
        return sum(1 for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Документ")
