"""The demo's 1C: the client side of the CommerceML "exchange with site" protocol, as 1C runs it.

Only what the demo's evening needs: log in (`checkauth`, Basic auth → cookie), `init`, ask for the orders
(`type=sale&mode=query`), count the «Заказ товара» documents, and confirm them (`mode=success`). Plain
HTTP (urllib); it knows nothing of the cloud's internals.
"""

from __future__ import annotations

import base64
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

    def call(self, mode: str, kind: str = "sale", *, auth: bool = False) -> bytes:
        query = urllib.parse.urlencode({"type": kind, "mode": mode})
        req = urllib.request.Request(f"{self.url}?{query}")
        if auth:
            req.add_header("Authorization", self.basic)
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise OSError(f"1C exchange {mode}: HTTP {exc.code} {exc.read()[:200]!r}") from None

    def take_orders(self) -> tuple[int, int]:
        """checkauth → init → query → success → query again; the numbers of order documents received the
        first time and the second time (0 when success marked them delivered)."""
        answer = self.call("checkauth", auth=True).decode("utf-8", "replace").splitlines()
        if not answer or answer[0] != "success":
            raise OSError(f"1C exchange refused the login: {' '.join(answer)[:200]}")
        self.cookie = f"{answer[1]}={answer[2]}"
        self.call("init")
        first = self.query()
        reply = self.call("success").decode("utf-8", "replace").strip()
        if not reply.startswith("success"):
            raise OSError(f"1C exchange did not accept success: {reply[:200]}")
        return first, self.query()

    def query(self) -> int:
        root = ET.fromstring(self.call("query"))
        return sum(1 for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Документ")
