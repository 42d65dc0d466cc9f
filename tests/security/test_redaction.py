"""Issue 21.3: an unexpected failure on a route whose URL holds a secret — Flask's own exception log, the
traceback, the error page — shows none of it (cloud_sync/web/redact.py, cloud_sync/web/errors.py)."""

from __future__ import annotations

import logging

from flask import request

from cloud_sync.config import parse_config
from cloud_sync.web import redact
from cloud_sync.web.app import create_app


def test_an_unhandled_error_on_a_token_url_is_logged_and_answered_without_the_token(tmp_path):
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "c.sqlite")},
                        "accounts": {"wb1": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9",
                                             "credentials": {"Authorization": "wb-secret-value-42"}}}})
    app = create_app(cfg)

    @app.post("/push/megamarket/mm-main/<token>/order/boom")
    def boom(token: str):
        raise RuntimeError(f"failed at {request.url} with wb-secret-value-42")

    log_file = tmp_path / "app.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        r = app.test_client().post("/push/megamarket/mm-main/tok-SECRET-123456/order/boom?api_key=k-SECRET-7")
        logging.getLogger("x").warning("calling https://api.example/bot123456:AAsecretBOT/sendMessage?token=t-SECRET-9")
        # werkzeug's request line, as its development server logs it (arguments formatted late)
        logging.getLogger("werkzeug").warning('%s - - [%s] "%s" %s -', "127.0.0.1", "06/Dec/2026 10:00:00",
                                              "POST /push/yandex_market/ym-1/tok-SECRET-55/notification HTTP/1.1",
                                              400)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert r.status_code == 500
    assert "SECRET" not in r.text and "внутренняя ошибка" in r.get_json()["error"]
    text = log_file.read_text()
    assert "Exception on /push/megamarket/mm-main/***/order/boom" in text and "Traceback" in text
    assert "RuntimeError" in text and "SECRET" not in text and "wb-secret-value-42" not in text
    assert "/bot***/sendMessage" in text and "AAsecretBOT" not in text
    assert '"POST /push/yandex_market/ym-1/***/notification HTTP/1.1" 400' in text


def test_redact_keeps_ordinary_words():
    assert redact.redact("shipping: 5 boxes, password changed") == "shipping: 5 boxes, password changed"
    assert redact.redact('{"push_token": "abc123def"}') == '{"push_token": "***"}'
    assert redact.redact("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic ***"
