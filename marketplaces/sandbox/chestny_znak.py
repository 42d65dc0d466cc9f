"""The Честный знак (ГИС МТ True API) sandbox: marking codes, their statuses and owners, as the packing
check asks about them (`POST /api/v3/true-api/cises/info`).

Owns the register of one seeded seller: every marked demo item (marketplaces/sandbox/seed.py, the ones
`marked`) has codes in circulation (`INTRODUCED`) owned by the seller's INN, and the register also holds
codes that must not ship — sold (`RETIRED`), written off (`WRITTEN_OFF`), printed but never introduced
(`APPLIED`), owned by another INN — listed by `POST /_sandbox/x/codes`. `POST /_sandbox/x/add`
{"gtin", "status", "ownerInn"} registers one more code (the full DataMatrix text is answered);
`POST /_sandbox/x/set` {"cis", "status"?, "ownerInn"?} changes one (a sale, a transfer).

Requests and answers are held to marketsync's own OpenAPI document of the call
(`chestny_znak_schemas/true-api.yaml`, written from the public sources in `chestny_znak_schemas/NOTES.md`:
the operator publishes the full True API description only to authenticated participants). Bearer token
auth, the error body `{"error_message"}`, and every fault the machinery injects (429, 5xx, latency, lost
or malformed replies), as the marketplace sandboxes do. Never imports the edge's client.
"""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from marketplaces import spec
from marketplaces.sandbox.core import ApiError, Route, SandboxApp, SandboxLimit, SandboxReply, SandboxRequest
from marketplaces.sandbox.seed import demo_items

MARKETPLACE = "chestny_znak"
SCHEMAS = Path(__file__).resolve().parent / "chestny_znak_schemas"
GS = "\x1d"
SELLER_INN = "7701234567"  # the demo seller
OTHER_INN = "5009876543"  # someone else: a code of theirs must not ship from our parcel
CODES_PER_ITEM = 12
SERIAL_CHARS = string.ascii_letters + string.digits + "!%&()*+-./:;<=>?_"
STATUSES = ("EMITTED", "APPLIED", "INTRODUCED", "WRITTEN_OFF", "RETIRED", "WITHDRAWN", "DISAGGREGATION",
            "DISAGGREGATED", "APPLIED_NOT_PAID")


def register_schemas() -> None:
    """Make `marketplaces.spec.load_specs("chestny_znak")` use our document of the call."""
    path = str(SCHEMAS / "true-api.yaml")
    if spec.SPEC_FILES.get(MARKETPLACE) != [path]:
        spec.register_spec_files(MARKETPLACE, [path])


def cis_of(text: str) -> str:
    """The identification part (01 GTIN 21 serial) of a code sent with or without its crypto tail."""
    s = text.split(GS, 1)[0]
    if s.startswith("01") and len(s) > 18 and s[16:18] == "21":
        rest = s[18:]
        for tail in ("91", "93"):  # separators lost: the serials Честный знак issues are 13 or 6 long
            for n in (13, 6):
                if len(rest) > n and rest[n:n + 2] == tail:
                    return s[:18] + rest[:n]
    return s


class ChestnyZnakSandbox(SandboxApp):
    marketplace = MARKETPLACE
    # The public material names no limit for cises/info; 50 requests a second per participant is assumed
    # (NOTES.md), so that a client's 429 handling is exercised like on the marketplaces.
    limits = {"cises": SandboxLimit(50, 50)}

    def __init__(self, **options: Any) -> None:
        register_schemas()
        super().__init__(**options)

    def make_credentials(self) -> dict[str, str]:
        return {"Authorization": f"Bearer cz-sandbox-token-{self.rng_seed:04d}"}

    def account_options(self) -> dict[str, Any]:
        return {"inn": SELLER_INN}

    def check_auth(self, req: SandboxRequest) -> SandboxReply | None:
        if req.headers.get("authorization", "") != self.credentials["Authorization"]:
            return self.error_reply(401, "Доступ запрещён: токен не передан или недействителен")
        return None

    def error_reply(self, status: int, message: str, *, code: str = "", template: str = "") -> SandboxReply:
        return SandboxReply(status, {"code": status, "error_message": message})

    def throttle_reply(self, retry_after_s: float, group: str) -> SandboxReply:
        wait = max(1, int(retry_after_s + 0.999))
        return SandboxReply(429, {"code": 429, "error_message": "Превышено количество запросов"},
                            headers={"Retry-After": str(wait)})

    def routes(self) -> list[Route]:
        return [Route("POST", "/api/v3/true-api/cises/info", self.cises_info, "cises")]

    # ------------------------------------------------------------ the register

    def seed_catalog(self, n: int) -> None:
        self.codes: dict[str, dict[str, Any]] = {}  # cis -> {"full", "info": cisInfo}
        self.kinds: dict[str, str] = {}  # cis -> why it is in the register (demo, sold, foreign...)
        self._rng = random.Random(self.rng_seed * 7919)
        self.base_time = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
        marked = [i for i in demo_items(n) if i.marked]
        for item in marked:
            gtin = item.barcode.zfill(14)
            for _ in range(CODES_PER_ITEM):
                self._add(gtin, "INTRODUCED", SELLER_INN, item.name, "in_circulation")
        if marked:
            first = marked[0]
            gtin = first.barcode.zfill(14)
            for status, owner, kind in (("RETIRED", SELLER_INN, "sold"), ("WRITTEN_OFF", SELLER_INN, "written_off"),
                                        ("APPLIED", SELLER_INN, "not_introduced"),
                                        ("INTRODUCED", OTHER_INN, "foreign")):
                self._add(gtin, status, owner, first.name, kind)

    def _add(self, gtin: str, status: str, owner: str, name: str = "", kind: str = "added") -> str:
        serial = "".join(self._rng.choice(SERIAL_CHARS) for _ in range(13))
        key = "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(4))
        signature = "".join(self._rng.choice(string.ascii_letters + string.digits + "+/=") for _ in range(44))
        cis = f"01{gtin}21{serial}"
        when = self.base_time + timedelta(minutes=len(self.codes))
        info: dict[str, Any] = {
            "requestedCis": cis, "cis": cis, "gtin": gtin, "productName": name, "productGroupId": 1,
            "productGroup": "lp", "emissionDate": when.isoformat().replace("+00:00", "Z"), "emissionType": "LOCAL",
            "packageType": "UNIT", "generalPackageType": "UNIT", "ownerInn": owner,
            "ownerName": "ООО «Демо Продавец»" if owner == SELLER_INN else "ООО «Чужая Фирма»",
            "producerInn": owner, "status": status,
        }
        if status in ("INTRODUCED", "RETIRED", "WRITTEN_OFF", "WITHDRAWN"):
            info["introducedDate"] = (when + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        if status == "RETIRED":
            info["withdrawReason"] = "RETAIL"
        self.codes[cis] = {"full": f"{cis}{GS}91{key}{GS}92{signature}", "info": info}
        self.kinds[cis] = kind
        return cis

    def snapshot(self) -> dict[str, Any]:
        return {"stocks": {}, "prices": {}, "orders": {},
                "codes": {cis: c["info"]["status"] for cis, c in self.codes.items()}}

    def make_orders(self, count: int) -> list[str]:
        raise ApiError(404, "Честный знак takes no orders")

    def control(self, name: str, body: dict[str, Any]) -> Any:
        if name == "codes":
            return {"seller_inn": SELLER_INN, "other_inn": OTHER_INN,
                    "codes": [{"code": c["full"], "cis": cis, "gtin": c["info"]["gtin"], "status": c["info"]["status"],
                               "ownerInn": c["info"]["ownerInn"], "kind": self.kinds[cis]}
                              for cis, c in self.codes.items()]}
        if name == "add":
            gtin = str(body["gtin"]).zfill(14)
            status = str(body.get("status", "INTRODUCED"))
            if status not in STATUSES or not gtin.isdigit() or len(gtin) != 14:
                raise ApiError(400, "gtin: 14 digits; status: one of " + ", ".join(STATUSES))
            cis = self._add(gtin, status, str(body.get("ownerInn", SELLER_INN)), str(body.get("name", "")))
            return {"cis": cis, "code": self.codes[cis]["full"]}
        if name == "set":
            found = self.codes.get(cis_of(str(body.get("cis", ""))))
            if found is None:
                raise ApiError(404, "no such code")
            if "status" in body:
                found["info"]["status"] = str(body["status"])
            if "ownerInn" in body:
                found["info"]["ownerInn"] = str(body["ownerInn"])
            return dict(found["info"])
        return super().control(name, body)

    # ------------------------------------------------------------ the call

    def cises_info(self, req: SandboxRequest) -> SandboxReply:
        asked = req.json()
        group = req.query.get("pg")
        out = []
        for text in asked:
            found = self.codes.get(cis_of(text))
            if found is None or (group and found["info"]["productGroup"] != group):
                out.append({"cisInfo": {"requestedCis": text}, "errorMessage": "Код идентификации не найден",
                            "errorCode": "404"})
            else:
                out.append({"cisInfo": dict(found["info"], requestedCis=text)})
        return SandboxReply(200, out)
