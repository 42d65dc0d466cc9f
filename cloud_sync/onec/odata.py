"""One connection to 1C's standard OData interface (`{base}/odata/standard.odata/`), as 1C documents it:
Basic auth, `$format=json` on every request, entity sets named `Catalog_…`, `Document_…`,
`InformationRegister_…`, a created object answered 201 with its `Ref_Key`, a list answered as
`{"value": [...]}`, `$filter` literals `'text'` and `guid'…'`, and refusals as `{"odata.error": {"code",
"message": {"lang", "value"}}}`.

Owns the HTTP of it (httpx), used by the commission report (commission.py) and by the items made from
marketplace cards (items_out.py). Errors name 1C's reason and never the password.
"""

from __future__ import annotations

from typing import Any

import httpx


class ODataFailure(ValueError):
    """1C's OData did not do what was asked; the message says why (in the seller's words where 1C gave them)."""


def odata_error(resp: Any) -> str:
    """1C's own reason for a refusal (`odata.error.message.value`), else the start of the answer."""
    try:
        err = resp.json().get("odata.error", {})
        return str(err.get("message", {}).get("value") or err.get("code") or resp.text[:200])
    except ValueError:
        return resp.text[:200]


def literal(value: str) -> str:
    """A text literal of `$filter` (a quote doubled)."""
    return "'" + value.replace("'", "''") + "'"


class ODataConnection:
    """`create(entity, body)` and `find(entity, filter)` against one published infobase."""

    def __init__(self, base_url: str, login: str, password: str, *, timeout_s: float = 30.0,
                 client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url + "/odata/standard.odata/"
        self.login = login
        self._auth = (login, password)
        self._own = client is None
        self.client = client or httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        if self._own:
            self.client.close()

    def _send(self, method: str, entity: str, *, params: dict[str, str] | None = None, body: Any = None) -> Any:
        try:
            resp = self.client.request(method, self.root + entity, params={"$format": "json", **(params or {})},
                                       json=body, auth=self._auth, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ODataFailure(f"1С (OData) по адресу {self.base_url} не ответила: {type(exc).__name__}") from None
        if resp.status_code == 401:
            raise ODataFailure(f"1С (OData) не приняла логин {self.login!r} (401)")
        if resp.status_code not in (200, 201, 204):
            raise ODataFailure(f"1С (OData) отказала ({resp.status_code}): {odata_error(resp)}")
        try:
            return resp.json() if resp.content else {}
        except ValueError:
            raise ODataFailure(f"1С (OData) ответила не JSON: {resp.text[:100]!r}") from None

    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a new object (or register record); 1C's answer (the object with its Ref_Key)."""
        return self._send("POST", entity, body=body)

    def find(self, entity: str, where: str, select: str = "") -> list[dict[str, Any]]:
        """GET the objects matching a `$filter`."""
        params = {"$filter": where}
        if select:
            params["$select"] = select
        answer = self._send("GET", entity, params=params)
        rows = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise ODataFailure("1С (OData) ответила без списка value")
        return rows
