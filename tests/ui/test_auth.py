"""Logins (argon2), sessions, roles, CSRF, the login rate limit and API tokens, over the real app
(Flask test client on a real SQLite file)."""

from __future__ import annotations

from cloud_sync import db as cloud_db
from cloud_sync.access import users
from cloud_sync.schema import open_db

from .conftest import PASSWORDS, form_token, login, start_db


def test_passwords_are_argon2_and_login_works_only_with_the_right_one(cloud):
    app, conn, _ = cloud
    stored = conn.execute("SELECT password_hash FROM users WHERE name='masha'").fetchone()[0]
    assert stored.startswith("$argon2id$") and "manager password 1" not in stored
    c = app.test_client()
    bad = login(c, "masha", "wrong password!")
    assert bad.status_code == 401 and "неверное имя пользователя или пароль" in bad.text
    assert 'id="password-error"' in bad.text  # the message sits beside the field
    assert c.get("/orders").status_code == 302  # still not in
    ok = login(c, "masha")
    assert ok.status_code == 302 and ok.headers["Location"] == "/orders"
    cookie = next(h for h in ok.headers.getlist("Set-Cookie") if h.startswith("ms_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # plain HTTP here
    assert c.get("/orders").status_code == 200


def test_session_cookie_is_secure_over_tls(cloud):
    app = cloud[0]
    c = app.test_client()
    page = c.get("/login", base_url="https://cloud.example")
    r = c.post("/login", base_url="https://cloud.example",
               data={"name": "olga", "password": "owner password 1", "csrf_token": form_token(page.text)})
    cookie = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("ms_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_unknown_name_and_wrong_password_look_the_same(cloud):
    c = cloud[0].test_client()
    a, b = login(c, "masha", "nope nope nope"), c.post("/login")
    assert b.status_code == 400  # no CSRF token: refused before any password check
    page = c.get("/login")
    r = c.post("/login", data={"name": "nobody", "password": "x" * 12, "csrf_token": form_token(page.text)})
    assert r.status_code == a.status_code == 401
    assert "неверное имя пользователя или пароль" in r.text


def test_login_is_rate_limited_per_name(cloud):
    app, conn, _ = cloud
    c = app.test_client()
    for _ in range(users.MAX_FAILURES):
        assert login(c, "petya", "guess guess guess").status_code == 401
    locked = login(c, "petya")  # even the right password waits now
    assert locked.status_code == 429 and "слишком много неудачных попыток входа" in locked.text
    assert locked.headers["Retry-After"]
    other = app.test_client()
    assert login(other, "masha").status_code == 302  # another name is not locked
    # the window passes: the right password works again and clears the failures
    conn.execute("UPDATE login_failures SET ts = ts - ?", (users.FAILURE_WINDOW_S + 1,))
    assert login(c, "petya").status_code == 302
    assert conn.execute("SELECT COUNT(*) FROM login_failures WHERE name='petya'").fetchone()[0] == 0


def _from(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_a_stranger_typing_wrong_passwords_cannot_lock_the_owner_out(cloud):
    app, conn, _ = cloud
    stranger = _from(app, "203.0.113.7")
    for _ in range(users.MAX_FAILURES):
        assert login(stranger, "petya", "guess guess guess").status_code == 401
    assert login(stranger, "petya").status_code == 429  # that name, from that address: locked
    assert login(_from(app, "198.51.100.20"), "petya").status_code == 302  # petya at the office gets in
    # guessing one name from many addresses locks the name everywhere
    conn.execute("DELETE FROM login_failures")
    for n in range(10):
        for _ in range(users.MAX_FAILURES):
            assert login(_from(app, f"203.0.113.{n + 10}"), "petya", "guess guess guess").status_code == 401
    assert login(_from(app, "198.51.100.20"), "petya").status_code == 429


def test_behind_our_own_proxy_logins_are_limited_per_client(tmp_path, users_db):
    """`[auth] trusted_proxies`: a proxy on this box passes every visitor on from 127.0.0.1; the login limit
    and the log go by the client it names. Without the setting the header is not believed."""

    from cloud_sync.config import parse_config
    from cloud_sync.web.app import create_app

    made: list[int] = []

    def client_of(**auth):
        made.append(1)  # a database of its own each (counted, not globbed: on PostgreSQL there is no file)
        db = tmp_path / f"c{len(made)}.sqlite"
        start_db(users_db, db)
        cfg = parse_config({"cloud": {"db_path": str(db)}, "auth": auth})
        return create_app(cfg).test_client(), open_db(cfg.db_path)

    def attempt(c, client_ip: str, password: str = "guess guess guess"):
        page = c.get("/login", headers={"X-Forwarded-For": client_ip})
        return c.post("/login", headers={"X-Forwarded-For": f"10.9.9.9, {client_ip}"},
                      data={"name": "petya", "password": password, "csrf_token": form_token(page.text)})

    c, conn = client_of(trusted_proxies=["127.0.0.1/32"])
    for _ in range(users.MAX_FAILURES):
        assert attempt(c, "203.0.113.7").status_code == 401
    assert attempt(c, "203.0.113.7", PASSWORDS["petya"]).status_code == 429
    assert attempt(c, "198.51.100.20", PASSWORDS["petya"]).status_code == 302  # another visitor is not locked
    assert {r[0] for r in conn.execute("SELECT address FROM login_failures")} == {"203.0.113.7"}
    conn.close()

    c, conn = client_of()  # no trusted proxy: anyone could write that header
    for _ in range(users.MAX_FAILURES):
        assert attempt(c, "203.0.113.7").status_code == 401
    assert {r[0] for r in conn.execute("SELECT address FROM login_failures")} == {"127.0.0.1"}
    assert attempt(c, "198.51.100.20", PASSWORDS["petya"]).status_code == 429
    conn.close()


def test_packer_cannot_open_price_pages_or_settings(as_user):
    packer = as_user("petya")
    assert packer.get("/orders").status_code == 200
    assert packer.get("/stocks").status_code == 200
    for path in ("/prices", "/reports", "/settings", "/products", "/api/prices/wb1"):
        r = packer.get(path)
        assert r.status_code == 403, path
    r = packer.post("/prices/preview", data={"csrf_token": form_token(packer.get("/orders").text), "account": "wb1"})
    assert r.status_code == 403
    assert "Prices" not in packer.get("/orders").text.split("<main>")[0]  # not even in the menu
    manager = as_user("masha")
    assert manager.get("/prices").status_code == 200
    assert manager.get("/settings").status_code == 403  # owners only
    assert as_user("olga").get("/settings").status_code == 200


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(as_user, cloud):
    _, conn, _ = cloud
    owner = as_user("olga")
    before = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    r = owner.post("/settings/users", data={"name": "intruder", "role": "owner", "password": "intruder pass 1"})
    assert r.status_code == 400 and "CSRF" in r.text
    r = owner.post("/settings/users", data={"name": "intruder", "role": "owner", "password": "intruder pass 1",
                                            "csrf_token": "forged"})
    assert r.status_code == 400
    assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == before
    token = form_token(owner.get("/settings").text)
    r = owner.post("/settings/users", data={"name": "vasya", "role": "packer", "password": "vasya password 1",
                                            "csrf_token": token})
    assert r.status_code == 200 and conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == before + 1
    # a JSON call made with the session cookie needs the header too
    assert owner.post("/api/orders/bulk", json={"action": "take", "keys": ["x"]}).status_code == 400
    assert owner.post("/api/orders/bulk", json={"action": "take", "keys": ["x"]},
                      headers={"X-CSRF-Token": token}).status_code == 422


def test_api_needs_a_token_or_session_once_a_user_exists(cloud):
    app, conn, _ = cloud
    c = app.test_client()
    assert c.get("/api/health").status_code == 200  # open
    assert c.get("/api/openapi.json").status_code == 200  # open
    r = c.get("/api/orders")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert c.get("/api/orders", headers={"Authorization": "Bearer mst_made-up"}).status_code == 401
    token = users.new_token(conn, "petya", "handheld")
    stored = conn.execute("SELECT token_sha256 FROM api_tokens").fetchone()[0]
    assert token not in stored
    auth = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/orders", headers=auth).status_code == 200
    assert c.get("/api/me", headers=auth).get_json() == {"name": "petya", "role": "packer", "auth": "token"}
    assert c.post("/api/prices/preview", headers=auth, json={"account": "wb1", "lines": []}).status_code == 403
    users.revoke_tokens(conn, "petya")
    assert c.get("/api/orders", headers=auth).status_code == 401


def test_logout_ends_the_session_on_the_server(as_user, cloud):
    c = as_user("masha")
    token = form_token(c.get("/orders").text)
    sid = c.get_cookie("ms_session").value
    assert c.post("/logout", data={"csrf_token": token}).status_code == 302
    assert users.session_user(cloud[1], sid) is None


def test_security_headers_on_pages(as_user):
    r = as_user("masha").get("/orders")
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"


def test_open_redirect_after_login_is_refused(cloud):
    c = cloud[0].test_client()
    page = c.get("/login")
    r = c.post("/login", data={"name": "masha", "password": "manager password 1", "csrf_token": form_token(page.text),
                               "next": "https://evil.example/"})
    assert r.headers["Location"] == "/"


def test_push_endpoints_and_the_1c_exchange_keep_their_own_caller_authentication(tmp_path, users_db):
    """Neither a marketplace nor 1C can log in: they pass the login wall but must prove themselves
    (the push token in the URL; HTTP Basic for 1C), and are refused without it."""
    import base64

    from cloud_sync.config import parse_config
    from cloud_sync.web.app import create_app
    from marketplaces import open_account

    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")},
                        "onec": {"login": "1c", "password": "onec-password-1"},
                        "accounts": {"mm1": {"marketplace": "megamarket", "base_url": "http://127.0.0.1:9",
                                             "credentials": {"token": "mm-api", "push_token": "push-secret-1"},
                                             "options": {"merchant_id": 1001, "push_sources": ["127.0.0.0/8"]}}}})
    app = create_app(cfg, adapters={"mm1": open_account(cfg.accounts["mm1"].account)})
    c = app.test_client()
    body = {"data": {"shipments": [], "merchantId": 1001}, "meta": {}}
    assert c.post("/push/megamarket/mm1/wrong-token/order/new", json=body).status_code == 403
    ok = c.post("/push/megamarket/mm1/push-secret-1/order/new", json=body)
    assert ok.status_code not in (302, 401, 403), ok.text  # past both walls: the webhook decides on the body
    assert c.get("/1c/exchange?type=catalog&mode=checkauth").status_code == 401
    bad = base64.b64encode(b"1c:wrong").decode()
    assert c.get("/1c/exchange?type=catalog&mode=checkauth", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    good = base64.b64encode(b"1c:onec-password-1").decode()
    r = c.get("/1c/exchange?type=catalog&mode=checkauth", headers={"Authorization": f"Basic {good}"})
    assert r.status_code == 200 and r.get_data(as_text=True).startswith("success")
    # and the manager's pages stay closed to both kinds of caller credentials
    assert c.get("/orders", headers={"Authorization": f"Basic {good}"}).status_code == 302


def test_login_is_rate_limited_per_address_across_names(cloud):
    app, conn, _ = cloud
    c = app.test_client()
    names = [f"nobody{n}" for n in range(4 * users.MAX_FAILURES)]
    for name in names:  # one guess per name: no name is locked, the address is
        page = c.get("/login")
        c.post("/login", data={"name": name, "password": "x" * 12, "csrf_token": form_token(page.text)})
    assert conn.execute("SELECT COUNT(DISTINCT name) FROM login_failures").fetchone()[0] == len(names)
    r = login(c, "olga")  # right name, right password, but this address has guessed too much
    assert r.status_code == 429


def test_first_run_lets_the_loopback_use_the_json_api_but_refuses_cross_site_forms(tmp_path):
    from cloud_sync.config import parse_config
    from cloud_sync.web.app import create_app

    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "fresh.sqlite")}})
    c = create_app(cfg).test_client()
    assert c.get("/api/summary").status_code == 200  # no user yet, loopback: the integration tests' way
    assert c.get("/api/summary", environ_base={"REMOTE_ADDR": "10.0.0.5"}).status_code == 401
    assert c.post("/api/orders/x:1/cancel", json={"reason": "r"}).status_code == 404  # JSON: let through
    r = c.post("/api/orders/x:1/cancel", data={"reason": "r"})  # a form, as another site could make one
    assert r.status_code == 403
    assert "marketsync cloud user add" in c.get("/login").text


def test_a_tokens_last_use_is_shown_and_never_makes_a_request_wait(cloud, as_user):
    """Settings → Users says when a user's API tokens were last used (a forgotten script, a lost handheld);
    writing that down never holds a request up while another writer (an import) has the database."""
    import time

    app, conn, cfg = cloud
    token = users.new_token(conn, "masha")
    api = app.test_client()
    owner = as_user("olga")
    assert "последнее использование никогда" in owner.get("/settings").text
    assert api.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    used = conn.execute("SELECT last_used_ts FROM api_tokens").fetchone()[0]
    assert used is not None and abs(used - time.time()) < 60
    assert "последнее использование никогда" not in owner.get("/settings").text

    conn.execute("UPDATE api_tokens SET last_used_ts = last_used_ts - 3600")  # due to be written again
    writer = cloud_db.connect(cfg.db_path)  # the writer lock of either engine (PostgreSQL: an advisory lock)
    writer.execute("BEGIN IMMEDIATE")  # as a long import holds it
    try:
        started = time.monotonic()
        assert api.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert time.monotonic() - started < 5  # not the 30 s a writer may be waited for
    finally:
        writer.execute("ROLLBACK")
        writer.close()
