"""The Честный знак sandbox served as `marketsync sandbox serve chestny_znak`: the register over real HTTP,
held to the call's OpenAPI document (chestny_znak_schemas/true-api.yaml), with the machinery's auth,
limits and fault injection."""

from __future__ import annotations

import httpx


def test_served_like_the_others_with_codes_statuses_owners_and_faults(sandbox_cli) -> None:
    with sandbox_cli("chestny_znak", "--seed", "10") as first:
        url, creds = first["url"], first["credentials"]
        assert first["marketplace"] == "chestny_znak" and first["options"] == {"inn": "7701234567"}
        register = httpx.post(url + "/_sandbox/x/codes", timeout=10).json()
        kinds = {c["kind"]: c for c in register["codes"]}
        assert set(kinds) == {"in_circulation", "sold", "written_off", "not_introduced", "foreign"}
        asked = [kinds["in_circulation"]["code"], kinds["sold"]["cis"], "0104607000000014210000000000000"]
        rows = httpx.post(url + "/api/v3/true-api/cises/info", json=asked, headers=creds, timeout=10).json()
        assert [r["cisInfo"].get("status") for r in rows] == ["INTRODUCED", "RETIRED", None]
        assert rows[0]["cisInfo"]["cis"] == kinds["in_circulation"]["cis"]  # asked with its crypto tail
        assert rows[0]["cisInfo"]["ownerInn"] == register["seller_inn"] and rows[2]["errorMessage"]
        other = httpx.post(url + "/api/v3/true-api/cises/info?pg=milk", json=asked[:1], headers=creds, timeout=10)
        assert "errorMessage" in other.json()[0]  # another product group does not hold it
        refused = httpx.post(url + "/api/v3/true-api/cises/info", json=asked, timeout=10,
                             headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401 and refused.json()["error_message"]
        bad = httpx.post(url + "/api/v3/true-api/cises/info", json={"codes": asked}, headers=creds, timeout=10)
        assert bad.status_code == 400 and "does not match" in bad.json()["error_message"]
        httpx.post(url + "/_sandbox/faults", json={"rate_429": 1.0}, timeout=10)
        throttled = httpx.post(url + "/api/v3/true-api/cises/info", json=asked, headers=creds, timeout=10)
        assert throttled.status_code == 429 and throttled.headers["Retry-After"]
        httpx.post(url + "/_sandbox/faults", json={"rate_429": 0, "rate_5xx": 1.0}, timeout=10)
        assert httpx.post(url + "/api/v3/true-api/cises/info", json=asked, headers=creds, timeout=10).status_code == 503
        state = httpx.get(url + "/_sandbox/state", timeout=10).json()
        assert state["spec_violations"] == [] and state["injected"]["5xx"] == 1
