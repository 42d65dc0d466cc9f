"""Prices: the price list of an account, the price document editor (lines or an uploaded CSV/XLSX)
with its preview diff, applying it through the account's adapter, and the scheduled rules — all
through cloud_sync.money (price_list, price_docs, price_preview, price_apply, uploads, price_rules)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from cloud_sync.money import (
    economics,
    price_apply,
    price_docs,
    price_list,
    price_preview,
    price_reads,
    price_rules,
)
from cloud_sync.money import uploads as price_upload
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text
from cloud_sync.web.pages.common import (
    PAGE_SIZE,
    accounts,
    args_for,
    find_item,
    page_number,
    sort_key,
)

ROWS = 6
MAX_ROWS = 500  # an upload (price_upload) is the way to send more lines at once
SCOPES = [("item", lazy_gettext("item (1C article)")), ("category", lazy_gettext("category")),
          ("card", lazy_gettext("card (article on the marketplace)")), ("all", lazy_gettext("all cards"))]
LINE_FIELDS = ("price", "percent", "discount_percent", "old_price")

bp = Blueprint("prices", __name__)


def _settings() -> price_preview.PricingSettings:
    return ctx().cfg.pricing


def _account(errors: dict[str, str]) -> str:
    account = request.values.get("account", "")
    if account not in ctx().cfg.accounts:
        errors["account"] = _("choose an account")
    return account


def _row_count() -> int:
    """How many editor rows the form says it has: a whole number up to MAX_ROWS (a forged or broken
    value falls back to the editor's own count instead of failing or looping for minutes)."""
    raw = request.form.get("rows", "")
    return min(int(raw), MAX_ROWS) if raw.isdigit() else ROWS


def _form_lines() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The editor's rows as (document lines, rows as typed); empty rows are skipped."""
    lines, typed = [], []
    for i in range(_row_count()):
        row = {k: request.form.get(f"{k}_{i}", "").strip() for k in ("scope", "key", *LINE_FIELDS)}
        typed.append(row)
        if not row["key"] and not any(row[k] for k in LINE_FIELDS) and row["scope"] != "all":
            continue
        line: dict[str, Any] = {row["scope"] or "item": True if row["scope"] == "all" else row["key"]}
        line.update({k: row[k] for k in LINE_FIELDS if row[k]})
        line["_row"] = i
        lines.append(line)
    return lines, typed


def _page(template: str = "cloud/prices.html", status: int = 200, **kw: Any):
    account = kw.pop("account", None) or request.values.get("account") or next(iter(sorted(ctx().cfg.accounts)), "")
    conn = get_db()
    docs = [dict(r) for r in conn.execute(
        "SELECT id, comment, status, created_at, applied_at FROM price_documents WHERE account=?"
        " ORDER BY created_at DESC LIMIT 20", (account,))] if account else []
    kw.setdefault("errors", {})
    kw.setdefault("typed", [{} for _row in range(ROWS)])
    column, desc = sort_key()
    page = page_number()
    rows, total = price_list.price_page(
        conn, account, economics.Estimates.from_settings(_settings()), q=request.args.get("q", "").strip(),
        sort=column, desc=desc, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE) if account else ([], 0)
    return render_template(template, active="prices", accounts=accounts(), account=account, scopes=SCOPES,
                           price_rows=rows, price_total=total, page=page, has_next=total > page * PAGE_SIZE,
                           args=args_for(account=account), q=request.args.get("q", ""), docs=docs,
                           rules=price_rules.rules(conn, account) if account else [], rows=ROWS,
                           price_reading=price_reads.state(conn).get(account),
                           rule_categories=price_list.categories(conn, account) if account else [], **kw), status


@bp.get("/prices/cards/suggest")
def suggest_cards():
    """The account's cards for a price line's field being typed (article first, then title or 1C name)."""
    q = request.args.get("q", "").strip()[:100]
    account = request.args.get("account", "")
    return jsonify(price_list.find_cards(get_db(), account, q) if q and account in ctx().cfg.accounts else [])


@bp.get("/prices")
def index():
    return _page()


@bp.post("/prices/read")
def read_now():
    """«Обновить цены с площадок»: every open account's prices are read back by the running service now."""
    price_reads.ask(get_db(), list(ctx().cfg.accounts))
    return _page(messages=[("ok", _("The prices are being read from the marketplaces: reload the page in a few seconds"))])


@bp.post("/prices/preview")
def preview():
    errors: dict[str, str] = {}
    account = _account(errors)
    lines, typed = _form_lines()
    if errors:
        return _page(status=400, errors=errors, typed=typed, comment=request.form.get("comment", ""))
    if not lines:
        errors["line_0"] = _("fill in at least one line (what to change and the new price or percent)")
    rows = []
    for line in lines:
        row = line.pop("_row")
        rows.append(row)
        try:
            price_docs.parse_line(line)
        except price_docs.PriceDocumentError as exc:
            errors[f"line_{row}"] = "; ".join(domain_text(p) for p in exc.problems)
    if errors:
        return _page(status=400, errors=errors, typed=typed, account=account,
                     comment=request.form.get("comment", ""))
    doc = price_docs.parse_document({"account": account, "lines": lines, "comment": request.form.get("comment", "")})
    pv = _compute(doc)
    for problem in pv.errors:  # "line N: unknown item ..." goes back beside its row of the editor
        m = re.match(r"line (\d+)\b", problem)
        if m and 0 < int(m.group(1)) <= len(rows):
            key = f"line_{rows[int(m.group(1)) - 1]}"
            errors[key] = "; ".join(filter(None, [errors.get(key), domain_text(problem.split(":", 1)[-1].strip())]))
    if errors:
        return _page(status=400, errors=errors, typed=typed, account=account,
                     comment=request.form.get("comment", ""))
    return _preview(doc, pv=pv)


@bp.post("/prices/upload")
def upload():
    errors: dict[str, str] = {}
    account = _account(errors)
    f = request.files.get("file")
    if f is None or not f.filename:
        errors["file"] = _("choose a .csv or .xlsx file")
    if errors:
        return _page(status=400, errors=errors, account=account)
    try:
        doc = price_upload.parse_upload(f.filename, f.read(price_upload.MAX_BYTES + 1), account)
    except price_upload.UploadError as exc:
        errors["file"] = domain_text(exc)
        return _page(status=400, errors=errors, account=account, upload_problems=exc.problems)
    return _preview(doc)


@bp.post("/prices/apply")
def apply():
    errors: dict[str, str] = {}
    try:
        data = json.loads(request.form.get("document", ""))
        held = _held(data.get("id")) if isinstance(data, dict) and data.get("id") else None
        doc = held or price_docs.parse_document(data)  # a held draft is sent as it was stored, nothing else
    except (ValueError, price_docs.PriceDocumentError) as exc:
        errors["document"] = _("the document cannot be read: %(why)s", why=domain_text(exc))
        return _page(status=400, errors=errors)
    adapter = ctx().adapters.get(doc.account)
    if adapter is None:
        return _preview(doc, errors={"document": _("account %(account)s is not connected", account=doc.account)},
                        status=409)
    rule_id = doc.source.removeprefix("rule:") if held and doc.source.startswith("rule:") else ""
    if rule_id and request.form.get("confirm") == "yes":  # a scheduled rule's held document: the rule sends it
        try:
            price_rules.confirm_held(get_db(), rule_id, doc.id, adapter, settings=_settings())
        except price_rules.RuleError as exc:
            return _preview(doc, errors={"document": domain_text(exc)}, status=409, held=True)
        return redirect(url_for("rules.page", rule_id=rule_id, done="1"))
    try:
        result = price_apply.apply(get_db(), doc, adapter, confirm=request.form.get("confirm") == "yes",
                               settings=_settings())
    except price_docs.ConfirmationRequired as exc:
        return _preview(doc, errors={"confirm": _("tick the box to confirm: %(what)s", what="; ".join(
            domain_text(p) for p in exc.problems[:5]))}, status=400)
    except price_docs.PriceDocumentError as exc:
        return _preview(doc, errors={"document": "; ".join(domain_text(p) for p in exc.problems[:10])}, status=400)
    return render_template("cloud/price_result.html", active="prices", result=result, doc=doc)


def _held(doc_id: object) -> price_docs.PriceDocument:
    """A stored draft by its id (a document held for a confirmation), or ValueError."""
    row = get_db().execute("SELECT status FROM price_documents WHERE id=?", (str(doc_id),)).fetchone()
    if row is None or row["status"] != "draft":
        raise ValueError(_("this document is no longer a draft"))
    return price_docs.load_document(get_db(), str(doc_id))


@bp.get("/prices/documents/<doc_id>")
def document(doc_id: str):
    """A held draft opened again: its preview, confirmed and sent from here, or discarded."""
    try:
        doc = _held(doc_id)
    except ValueError:
        abort(404)
    return _preview(doc, held=True)


@bp.post("/prices/documents/<doc_id>/discard")
def discard(doc_id: str):
    if not price_docs.discard_draft(get_db(), doc_id):
        return _page(status=404, messages=[("error", _("no such draft"))])
    return _page(messages=[("ok", _("the draft is discarded; nothing was sent"))])


@bp.post("/prices/rules")
def add_rule():
    errors: dict[str, str] = {}
    account = _account(errors)
    text = request.form.get("rule", "").strip()
    category, item = request.form.get("rule_category", "").strip(), request.form.get("rule_item", "").strip()
    if not text:
        errors["rule"] = _("write the rule, e.g. -10%, Friday 18:00, back Monday 09:00")
    if category and item:
        errors["rule_item"] = _("a rule is limited to a category or to an item, not both")
    lines = [{"category": category}] if category else None
    if item and not errors:  # an item is chosen by its article or 1C name
        item_id, why = find_item(get_db(), item)
        if why:
            errors["rule_item"] = why
        lines = [{"item": item_id}]
    if not errors:
        try:
            price_rules.add_rule(get_db(), account=account, text=text, lines=lines,
                                 tz=request.form.get("tz") or "Europe/Moscow")
        except (price_rules.RuleError, ValueError) as exc:
            errors["rule"] = domain_text(exc)
    if errors:
        return _page(status=400, errors=errors, account=account, rule_text=text, rule_category=category,
                     rule_item=item)
    return _page(account=account, messages=[("ok", _("rule added: %(rule)s", rule=text))])


@bp.post("/prices/rules/<rule_id>/<onoff>")
def toggle_rule(rule_id: str, onoff: str):
    if onoff not in ("on", "off"):
        abort(404)
    try:
        price_rules.set_enabled(get_db(), rule_id, onoff == "on")
    except (price_rules.RuleError, ValueError, KeyError) as exc:
        return _page(status=400, messages=[("error", domain_text(exc))])
    return _page(messages=[("ok", _("rule switched on") if onoff == "on" else _("rule switched off"))])


def _compute(doc: price_docs.PriceDocument) -> price_preview.Preview:
    return price_preview.preview(get_db(), doc, settings=_settings(), marketplace=ctx().cfg.accounts[doc.account].marketplace
                           if doc.account in ctx().cfg.accounts else None)


def _preview(doc: price_docs.PriceDocument, *, errors: dict[str, str] | None = None, status: int = 200,
             pv: price_preview.Preview | None = None, held: bool = False):
    pv = pv or _compute(doc)
    data = {"account": doc.account, "comment": doc.comment, "rounding": str(doc.rounding),
            "lines": [price_docs.line_to_dict(x) for x in doc.lines]}
    if held:
        data["id"] = doc.id  # sent as the stored draft: its status changes, no second document
    return render_template("cloud/price_preview.html", active="prices", pv=pv, table=pv.as_table(), doc=doc,
                           document=json.dumps(data, ensure_ascii=False), errors=errors or {}, held=held), status
