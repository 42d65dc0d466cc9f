"""The OpenAPI 3.0 document of the cloud's JSON API, served at /api/openapi.json (no login needed to
read it; every operation in it needs an API token `Authorization: Bearer mst_…` or a session).

Kept by hand beside the routes (cloud_sync/web/api.py, and /api/me in cloud_sync/web/auth.py); an /api
route described nowhere here still appears (from the app's URL map); the schemathesis run in
tests/ui/test_openapi.py holds the two together.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify

OBJ: dict[str, Any] = {"type": "object"}
ARR: dict[str, Any] = {"type": "array"}
ERR = {"description": "refused", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}}}}}


def _ok(schema: dict[str, Any] | None = None, desc: str = "ok") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema or OBJ}}}


def _q(name: str, required: bool = False, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema or {"type": "string"}}


def _p(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": props, "required": required}}}}


def _op(summary: str, responses: dict[str, Any], *, params: list | None = None, body: dict | None = None,
        auth: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if not auth:
        op["security"] = []
    else:
        op["responses"] = {**responses, "401": ERR, "403": ERR}
    return op


LINE = {"type": "object", "properties": {
    "item": {"type": "string"}, "category": {"type": "string"}, "card": {"type": "string"}, "all": {"type": "boolean"},
    "price": {"type": "string"}, "percent": {"type": "string"}, "discount_percent": {"type": "string"},
    "old_price": {"type": "string"}, "min_price": {"type": "string"}}}
DOC_PROPS = {"account": {"type": "string"}, "comment": {"type": "string"}, "lines": {"type": "array", "items": LINE}}
INT = {"type": "integer", "minimum": 0, "maximum": 1_000_000}


GENERIC = {"200": _ok(), "400": ERR, "404": ERR, "409": ERR, "422": ERR, "502": ERR}

bp = Blueprint("openapi", __name__)


def _undescribed(app: Flask, paths: dict[str, Any]) -> dict[str, Any]:
    """Any /api route not described above, from the app's own URL map (summary from its docstring), so
    the document never silently omits an endpoint someone added; describe it properly here."""
    out: dict[str, Any] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if method.lower() in paths.get(path, {}):
                continue
            view = app.view_functions.get(rule.endpoint)
            summary = ((view.__doc__ or "").strip().splitlines() or [rule.endpoint])[0] if view else rule.endpoint
            params = [{"name": a, "in": "path", "required": True,
                       "schema": {"type": "integer", "minimum": 0} if rule._converters[a].__class__.__name__
                       == "IntegerConverter" else {"type": "string"}} for a in rule.arguments]
            op = _op(summary, dict(GENERIC), params=params or None)
            if method in ("POST", "PUT", "PATCH"):
                op["requestBody"] = {"content": {"application/json": {"schema": OBJ}}}
            out.setdefault(path, {})[method.lower()] = op
    return out


def document(app: Flask | None = None) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/health": {"get": _op('liveness for anyone ({"ok": true}); accounts, link and jobs for a signed-in'
                                        " user or an API token, with this process, the live cloud processes"
                                        " and which of them holds each job's lease", {"200": _ok()}, auth=False)},
        "/api/me": {"get": _op("who is asking", {"200": _ok()})},
        "/api/summary": {"get": _op("counts for the demo's summary", {"200": _ok()})},
        "/api/events": {"get": _op("order events in plain words after an id", {"200": _ok(), "400": ERR},
                                   params=[_q("after", schema=INT), _q("limit", schema=INT)])},
        "/api/orders": {"get": _op("orders of every account, by deadline then status", {"200": _ok(ARR), "400": ERR},
                                   params=[_q("account"), _q("status"), _q("limit", schema=INT),
                                           _q("offset", schema=INT)])},
        "/api/orders/{key}": {"get": _op("one order with lines, actions and history", {"200": _ok(), "404": ERR},
                                         params=[_p("key")])},
        "/api/orders/bulk": {"post": _op("take into work | labels | cancel (with a reason) several orders",
                                         {"200": _ok(), "400": ERR, "422": ERR},
                                         body=_body({"action": {"type": "string", "enum": ["take", "retry", "labels", "cancel"]},
                                                     "keys": {"type": "array", "items": {"type": "string"}},
                                                     "reason": {"type": "string"}}, ["action", "keys"]))},
        "/api/stock": {"get": _op("stock levels per item and own warehouse", {"200": _ok(ARR)},
                                  params=[_q("item"), _q("warehouse")])},
        "/api/stock/why": {"get": _op("how a published number was computed", {"200": _ok(), "400": ERR, "422": ERR},
                                      params=[_q("item", True), _q("account", True)])},
        "/api/stock/push": {"get": _op("stock push queue and zero-guard holds", {"200": _ok()})},
        "/api/cards": {"get": _op("marketplace cards with their links", {"200": _ok(ARR)},
                                  params=[_q("account"), _q("item"), _q("category"),
                                          _q("linked", schema={"type": "string", "enum": ["1", "0", "true", "false"]})])},
        "/api/cards/categories": {"get": _op("card categories with counts", {"200": _ok()}, params=[_q("account")])},
        "/api/orders/{key}/cancel": {"post": _op("cancel one order (releases its stock, tells the site)",
                                                 {"200": _ok(), "404": ERR, "422": ERR},
                                                 params=[_p("key")],
                                                 body=_body({"reason": {"type": "string"}}, []))},
        "/api/orders/{key}/retry": {"post": _op("check a waiting order again now (earlier deadlines first)",
                                                {"200": _ok(), "404": ERR, "422": ERR}, params=[_p("key")])},
        "/api/orders/{key}/choices": {"get": _op("what a seller can do with a waiting order",
                                                 {"200": _ok(), "404": ERR}, params=[_p("key")])},
        "/api/orders/{key}/serve-from": {"post": _op("serve a waiting order from another own warehouse",
                                                     {"200": _ok(), "400": ERR, "404": ERR, "422": ERR},
                                                     params=[_p("key")],
                                                     body=_body({"warehouse": {"type": "string"}}, ["warehouse"]))},
        "/api/handovers": {"post": _op("start a hand-over of an account's packed orders", {"200": _ok(), "400": ERR,
                                                                                          "404": ERR, "422": ERR},
                                       body=_body({"account": {"type": "string"}}, ["account"]))},
        "/api/stock/balances": {"post": _op("set balances of an own warehouse by hand",
                                            {"200": _ok(), "400": ERR, "422": ERR},
                                            body=_body({"warehouse": {"type": "string"},
                                                        "balances": {"type": "object", "additionalProperties": {
                                                            "type": "integer", "minimum": 0, "maximum": 1_000_000}},
                                                        "full": {"type": "boolean"}}, ["warehouse", "balances"]))},
        "/api/stock/holds/{hold_id}/confirm": {"post": _op(
            "confirm stock pushes held by the zero guard", {"200": _ok(), "404": ERR},
            params=[{"name": "hold_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0,
                                                                                   "maximum": 2**31}}],
            body=_body({"by": {"type": "string"}}, []))},
        "/api/cards/report": {"get": _op("link what can be linked, then report ambiguous and unmatched cards",
                                         {"200": _ok()}, params=[_q("account")])},
        "/api/cards/link": {"post": _op("link a card to a 1C item (N units per card)",
                                        {"200": _ok(), "400": ERR, "404": ERR, "422": ERR},
                                        body=_body({"account": {"type": "string"}, "card_id": {"type": "string"},
                                                    "item_id": {"type": "string"},
                                                    "pack": {"type": "integer", "minimum": 1, "maximum": 1000}},
                                                   ["account", "card_id", "item_id"]))},
        "/api/cards/unlink": {"post": _op("unlink a card (kept unlinked until linked by hand)",
                                          {"200": _ok(), "400": ERR, "404": ERR, "422": ERR},
                                          body=_body({"account": {"type": "string"}, "card_id": {"type": "string"}},
                                                     ["account", "card_id"]))},
        "/api/cards/visibility": {"post": _op("hide cards from the storefront or show them again",
                                              {"200": _ok(ARR), "400": ERR, "404": ERR, "422": ERR, "502": ERR},
                                              body=_body({"account": {"type": "string"},
                                                          "card_ids": {"type": "array", "items": {"type": "string"}},
                                                          "visible": {"type": "boolean"}},
                                                         ["account", "card_ids", "visible"]))},
        "/api/cards/create": {"post": _op("create a card from a 1C item, filled by its category's rules",
                                          {"200": _ok(), "400": ERR, "404": ERR, "422": ERR, "502": ERR},
                                          body=_body({"account": {"type": "string"}, "item_id": {"type": "string"},
                                                      "subject_id": {"type": "integer", "minimum": 1,
                                                                     "maximum": 2**31},
                                                      "brand": {"type": "string"},
                                                      "price": {"type": "integer", "minimum": 0, "maximum": 10**7},
                                                      "size": {"type": "string"}, "description": {"type": "string"},
                                                      "photos": {"type": "array", "items": {"type": "string"}},
                                                      "category_id": {"type": "string",
                                                                      "pattern": "^[1-9][0-9]*(:[1-9][0-9]*)?$"}},
                                                     ["account", "item_id"]))},
        "/api/cards/marketplace-categories/{account}": {"get": _op(
            "the marketplace's categories (WB subjects) whose name holds `name`",
            {"200": _ok(ARR), "400": ERR, "404": ERR, "502": ERR}, params=[_p("account"), _q("name")])},
        "/api/cards/fill-rules/{account}/{category_id}": {
            "get": _op("a category's characteristics with the seller's fill rule of each (1C property or value)",
                       {"200": _ok(ARR), "400": ERR, "404": ERR, "502": ERR},
                       params=[_p("account"), _p("category_id")]),
            "put": _op("replace a category's fill rules", {"200": _ok(), "400": ERR, "404": ERR, "502": ERR},
                       params=[_p("account"), _p("category_id")],
                       body=_body({"rules": {"type": "array", "items": {
                           "type": "object", "properties": {"attribute_id": {"type": "integer"},
                                                            "property": {"type": "string"},
                                                            "value": {"type": "string"}},
                           "required": ["attribute_id"]}}}, ["rules"]))},
        "/api/onec/new-items": {
            "get": _op("cards into 1C: the 1C items the cards that match no 1C item would make (the preview)",
                       {"200": _ok()}, params=[_q("account")]),
            "post": _op("cards into 1C: create the previewed items (or `articles`) in 1C via OData, then link",
                        {"200": _ok(), "400": ERR, "409": ERR},
                        body=_body({"articles": {"type": "array", "items": {"type": "string"}}}, []))},
        "/api/cards/creations": {"get": _op("card creations and their state", {"200": _ok(ARR)},
                                            params=[_q("account")])},
        "/api/sites": {"get": _op("sites, last seen and devices", {"200": _ok(ARR)})},
        "/api/settings/secrets": {
            "get": _op("stored secrets: names, field names, when (never a value); owners", {"200": _ok(ARR)}),
            "post": _op("store credentials encrypted (write-only); owners", {"200": _ok(), "400": ERR, "422": ERR},
                        body=_body({"name": {"type": "string"}, "fields": {"type": "object", "additionalProperties": {
                            "type": "string"}}}, ["name", "fields"]))},
        "/api/prices/{account}": {"get": _op("the account's price list", {"200": _ok(ARR), "404": ERR},
                                             params=[_p("account")])},
        "/api/prices/preview": {"post": _op("preview a price document (sends nothing)",
                                            {"200": _ok(), "400": ERR, "404": ERR, "422": ERR},
                                            body=_body(DOC_PROPS, ["account", "lines"]))},
        "/api/prices/apply": {"post": _op("apply a price document through the account's adapter",
                                          {"200": _ok(), "400": ERR, "404": ERR, "409": ERR, "422": ERR},
                                          body=_body({**DOC_PROPS, "confirm": {"type": "boolean"}},
                                                     ["account", "lines"]))},
        "/api/prices/rules": {"post": _op("add a scheduled price rule", {"200": _ok(), "400": ERR, "404": ERR, "422": ERR},
                                          body=_body({"account": {"type": "string"}, "rule": {"type": "string"},
                                                      "tz": {"type": "string"}}, ["account", "rule"]))},
        "/api/reports/commission": {"get": _op("commission agent report of an account and period",
                                               {"200": _ok(), "404": ERR, "422": ERR, "502": ERR},
                                               params=[_q("account", True), _q("from", True, {"type": "string", "format": "date"}),
                                                       _q("to", True, {"type": "string", "format": "date"})])},
        "/api/reports/builds": {"post": _op("build a commission agent report in the background",
                                            {"202": _ok(), "400": ERR, "404": ERR, "422": ERR},
                                            body=_body({"account": {"type": "string"},
                                                        "from": {"type": "string", "format": "date"},
                                                        "to": {"type": "string", "format": "date"}},
                                                       ["account", "from", "to"]))},
        "/api/reports/builds/{build_id}": {"get": _op("a report build: state, progress, then totals and reconciliation",
                                                      {"200": _ok(), "404": ERR}, params=[_p("build_id")])},
    }
    if app is not None:
        for path, ops in _undescribed(app, paths).items():
            paths.setdefault(path, {}).update(ops)
        paths.pop("/api/openapi.json", None)
    return {
        "openapi": "3.0.3",
        "info": {"title": "marketsync cloud API", "version": "1",
                 "description": "Orders, stock, cards, prices and reports of every marketplace account."},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"},
                                           "session": {"type": "apiKey", "in": "cookie", "name": "ms_session"}}},
        "security": [{"token": []}, {"session": []}],
        "paths": paths,
    }


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(document(current_app))
