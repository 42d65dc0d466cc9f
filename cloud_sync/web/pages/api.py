"""The JSON side of the manager's operations that the core API (cloud_sync/app.py) does not cover:
price lists and price documents (preview, apply), price rules, bulk order actions, the commission
report. Same domain functions as the pages; described in cloud_sync/openapi.py."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, jsonify, request

from cloud_sync.money import price_apply, price_docs, price_preview, price_rules, reports
from cloud_sync.money import price_list as money_price_list
from cloud_sync.orders import desk as order_desk
from marketplaces.base import MarketplaceError


def _body() -> dict[str, Any]:
    from cloud_sync.web.app import ApiError

    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError("the request body must be a JSON object")
    return data


def _doc(data: dict[str, Any]) -> price_docs.PriceDocument:
    from cloud_sync.web.app import ApiError, ctx

    try:
        doc = price_docs.parse_document(data)
    except price_docs.PriceDocumentError as exc:
        raise ApiError("; ".join(exc.problems), 422) from None
    if doc.account not in ctx().cfg.accounts:
        raise ApiError(f"unknown account {doc.account!r}", 404)
    return doc


def blueprint() -> Blueprint:
    bp = Blueprint("ui_api", __name__)

    @bp.get("/api/prices/<account>")
    def price_list(account: str):
        from cloud_sync.web.app import ApiError, ctx, db

        if account not in ctx().cfg.accounts:
            raise ApiError(f"unknown account {account!r}", 404)
        return jsonify(money_price_list.price_list(db(), account))

    @bp.post("/api/prices/preview")
    def preview():
        from cloud_sync.web.app import ctx, db

        doc = _doc(_body())
        pv = price_preview.preview(db(), doc, settings=ctx().cfg.pricing,
                             marketplace=ctx().cfg.accounts[doc.account].marketplace)
        return jsonify({"ok": pv.ok, "errors": pv.all_errors, "warnings": pv.warnings, "to_confirm": pv.to_confirm,
                        "rows": pv.as_table()})

    @bp.post("/api/prices/apply")
    def apply():
        from cloud_sync.web.app import ApiError, ctx, db

        data = _body()
        confirm = bool(data.pop("confirm", False))
        doc = _doc(data)
        adapter = ctx().adapters.get(doc.account)
        if adapter is None:
            raise ApiError(f"account {doc.account!r} is not connected", 409)
        try:
            res = price_apply.apply(db(), doc, adapter, confirm=confirm,
                                settings=ctx().cfg.pricing)
        except price_docs.ConfirmationRequired as exc:
            return jsonify({"error": str(exc), "to_confirm": exc.problems}), 409
        except price_docs.PriceDocumentError as exc:
            return jsonify({"error": str(exc), "problems": exc.problems}), 422
        return jsonify({"document_id": res.document_id, "status": res.status, "unchanged": res.unchanged,
                        "results": [{"card_id": r.card_id, "offer_id": r.offer_id, "ok": r.ok, "error": r.error,
                                     "price": None if r.price is None else str(r.price)} for r in res.results]})

    @bp.post("/api/prices/rules")
    def add_rule():
        from cloud_sync.web.app import ApiError, ctx, db

        data = _body()
        account, text = str(data.get("account", "")), str(data.get("rule", ""))
        if account not in ctx().cfg.accounts:
            raise ApiError(f"unknown account {account!r}", 404)
        try:
            rule = price_rules.add_rule(db(), account=account, text=text, tz=str(data.get("tz") or "Europe/Moscow"))
        except (price_rules.RuleError, ValueError) as exc:
            raise ApiError(str(exc), 422) from None
        return jsonify({"id": rule.id, "name": rule.name, "start": rule.start_at, "end": rule.end_at})

    @bp.post("/api/orders/bulk")
    def bulk():
        from cloud_sync.web.app import ApiError, ctx, db
        from cloud_sync.web.auth import current_user

        data = _body()
        keys = data.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ApiError("keys must be a list of order keys")
        user = current_user()
        try:
            res = order_desk.run(db(), ctx().cfg, str(data.get("action", "")), keys,
                                 by=user.name if user else "api", reason=str(data.get("reason", "")), link=ctx().link)
        except order_desk.DeskError as exc:
            raise ApiError(str(exc), 422) from None
        ctx().wake()
        return jsonify({"done": res.done, "skipped": res.skipped})

    @bp.get("/api/reports/commission")
    def commission():
        from cloud_sync.web.app import ApiError, ctx, db

        a = request.args
        adapter = ctx().adapters.get(a.get("account", ""))
        if adapter is None:
            raise ApiError("give a connected account", 404)
        try:
            d_from, d_to = date.fromisoformat(a.get("from", "")), date.fromisoformat(a.get("to", ""))
            report = reports.fetch_commission_report(db(), adapter, d_from, d_to)
        except ValueError as exc:
            raise ApiError(f"from/to: {exc}", 422) from None
        except MarketplaceError as exc:
            raise ApiError(str(exc), 502) from None
        headers, rows = reports.commission_table(report)
        return jsonify({"id": report.id, "reconciled": report.reconciled, "headers": headers,
                        "rows": [[str(v) if v is not None else None for v in r] for r in rows]})

    @bp.get("/api/settings/secrets")
    def list_secrets():
        """What is stored (names, field names, when): never a value."""
        from cloud_sync.access import secrets
        from cloud_sync.web.app import db

        return jsonify(secrets.describe(db()))

    @bp.post("/api/settings/secrets")
    def put_secret():
        """Store credentials (write-only, encrypted): {"name": "account/wb-main" | "telegram/bot_token",
        "fields": {"Authorization": "..."}}; owners only."""
        from cloud_sync.access import secrets
        from cloud_sync.web.app import ApiError, ctx, db

        data = _body()
        name, fields = data.get("name"), data.get("fields")
        if not isinstance(name, str) or not (name.startswith("account/") and name[8:] in ctx().cfg.accounts
                                             or name == secrets.BOT_TOKEN):
            raise ApiError("name must be account/<a configured account> or telegram/bot_token", 422)
        if not isinstance(fields, dict) or not fields or not all(
                isinstance(k, str) and k and isinstance(v, str) and v and len(v) <= 4096 for k, v in fields.items()):
            raise ApiError("fields must be an object of non-empty strings", 422)
        from cloud_sync.web.pages.settings import credentials_stored, use_bot_token

        if name == secrets.BOT_TOKEN:
            value = fields.get("value", "")
            if not value:
                raise ApiError('give the bot token as {"value": "..."}', 422)
            secrets.SecretStore(secrets.key_file_for(ctx().cfg)).put(db(), name, value, merge=False)
            message = use_bot_token(value)
        else:  # in use at once, as from the Settings page
            secrets.SecretStore(secrets.key_file_for(ctx().cfg)).put(db(), name, fields)
            message = credentials_stored(name[len("account/"):], f"{name} stored encrypted", *fields.values())[1]
        return jsonify({"stored": name, "fields": sorted(fields), "message": message})

    return bp
