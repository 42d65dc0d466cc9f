"""Every route of the app, found in its url_map, asked under another seller's prefix with seller alfa's
session cookie and alfa's API token: never an answer with data (a redirect to that seller's login, 401 or
403; the open doors — the login page, the health check, the OpenAPI document, static files — and the
doors that check their own callers — marketplace pushes, 1C — give nothing of the seller and nothing
that knows alfa); and no answer of alfa's, on any route, holds anything of seller beta's."""

from __future__ import annotations

import httpx
import pytest

from cloud_sync.web.auth import OPEN_PATHS, OWN_AUTH_PATHS, SAFE_METHODS

from .conftest import A_MARKERS, B_MARKERS, World, routes, rule_values

pytestmark = pytest.mark.slow


def _judge(resp: httpx.Response, root: str, inner: str, intruder: str, markers: tuple[str, ...]) -> str | None:
    """What is wrong with the answer to an intruder ("" when it is a refusal that gives nothing away)."""
    body = resp.text
    # a marker the intruder put in the URL itself (beta's order key) comes back in `next=`: not a leak
    leaked = [m for m in (*markers, intruder) if m in body and m not in inner]
    if leaked:
        return f"{resp.status_code} shows {leaked}"
    if resp.status_code >= 500:
        return f"{resp.status_code} (a failure, not a refusal)"
    if resp.status_code in (301, 302, 303, 307, 308):
        where = resp.headers.get("location", "")
        return None if where.startswith(f"{root}/login") else f"redirects to {where!r}, not to the login"
    if resp.status_code in (401, 403):
        return None
    if inner.startswith(OPEN_PATHS) or inner.startswith(OWN_AUTH_PATHS):
        return None  # an open door or one checking its own callers: nothing of the seller in it (checked above)
    return f"{resp.status_code}: an answer, not a refusal"


@pytest.mark.parametrize("target", ["beta", ""])
def test_every_route_refuses_another_sellers_cookie_and_token(world: World, target: str) -> None:
    alfa = world.sellers["alfa"]
    root = f"/t/{target}" if target else ""
    values = rule_values(world.sellers[target]) if target else {}
    markers = (*B_MARKERS, "owner-main") if target else ("owner-main",)
    found = routes(world, target, values)
    assert len(found) > 100 and any(rule.startswith("/api/orders") for _, _, rule in found)  # the whole map
    wrong: list[str] = []
    with httpx.Client(base_url=world.url, follow_redirects=False, timeout=30) as web:
        for method, path, _rule in found:
            write = method not in SAFE_METHODS
            as_cookie = {"Cookie": f"ms_session={alfa.sid}"}
            if write:
                as_cookie["X-CSRF-Token"] = alfa.csrf
            for how, headers in (("cookie", as_cookie), ("token", {"Authorization": f"Bearer {alfa.token}"})):
                kwargs = {}
                if write:
                    kwargs = {"data": {"csrf_token": alfa.csrf}} if how == "cookie" else {"json": {}}
                resp = web.request(method, root + path, headers=headers, **kwargs)
                problem = _judge(resp, root, path, alfa.admin, markers)
                if problem:
                    wrong.append(f"{method} {root}{path} with alfa's {how}: {problem}")
    assert not wrong, "\n".join(wrong[:30])


def test_no_answer_of_a_seller_holds_another_sellers_data(world: World) -> None:
    """Every GET route of alfa's app (and of the main seller's), asked with their own token: beta's data,
    which beta's own pages show (checked first), is in none of them."""
    beta = world.sellers["beta"]
    with httpx.Client(base_url=world.url, follow_redirects=False, timeout=30) as web:
        own = web.get(f"{beta.root}/api/orders", headers={"Authorization": f"Bearer {beta.token}"}).text
        assert beta.account in own  # the markers are real: beta sees its own
        page = web.get(f"{beta.root}/sites", headers={"Authorization": f"Bearer {beta.token}"}).text
        assert "BETA-SECRET" in page
        seen: list[str] = []
        asked = 0
        for tenant, token in (("alfa", world.sellers["alfa"].token), ("", world.main_token)):
            root = f"/t/{tenant}" if tenant else ""
            values = rule_values(world.sellers[tenant]) if tenant else {}
            for method, path, _rule in routes(world, tenant, values):
                if method != "GET":
                    continue
                resp = web.get(root + path, headers={"Authorization": f"Bearer {token}"})
                asked += 1
                leaked = [m for m in B_MARKERS if m in resp.text]
                if leaked:
                    seen.append(f"GET {root}{path} ({resp.status_code}) shows {leaked}")
                if tenant and resp.status_code == 200 and path.startswith("/api/orders"):
                    assert world.sellers["alfa"].account in resp.text or "[]" in resp.text
    assert asked > 80
    assert not seen, "\n".join(seen[:30])
    assert not any(m in own for m in A_MARKERS)  # and beta's answer holds nothing of alfa's
