"""The demo's packer after a restart of the box: the Честный знак register still lists the codes of units
already in parcels as in circulation (a code is sold when its parcel is), so the packer must not take
them again. Before this it did: the soak's edge kills left marked orders stuck at the site, every scan
refused with «код маркировки уже использован»."""

from __future__ import annotations

import json
import urllib.request

from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_packer import MarkedGoods, code_id


def _codes(url: str) -> list[dict]:
    req = urllib.request.Request(f"{url}/_sandbox/x/codes", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["codes"]


def test_codes_already_packed_at_the_site_are_not_taken_again() -> None:
    running = start_sandbox("chestny_znak", seed=12, validate=False)
    try:
        fresh = [c for c in _codes(running.url) if c["kind"] == "in_circulation"]
        gtin = fresh[0]["gtin"]
        of_gtin = [c["code"] for c in fresh if c["gtin"] == gtin]
        assert len(of_gtin) >= 2
        packed = {code_id(of_gtin[0])}
        assert packed != {""}
        goods = MarkedGoods(running.url, used=lambda: packed)
        goods.show_refusal = False
        taken = goods.codes_for_unit(gtin)
        assert taken == [of_gtin[1]]
        again = MarkedGoods(running.url)  # a packer that does not look at the site takes the packed one
        again.show_refusal = False
        assert again.codes_for_unit(gtin) == [of_gtin[0]]
    finally:
        running.stop()
