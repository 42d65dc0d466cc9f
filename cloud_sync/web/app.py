"""The cloud's web app factory: `create_app(config, ...)` is wiring only. It keeps what the views need
in `app.extensions["marketsync"]` (a `Context`, cloud_sync/web/context.py: the config, the database
path, the account adapters, the site link, the stock pusher, the jobs), registers the blueprints (auth,
the JSON API, the manager's pages, the print forms, the OpenAPI document, the marketplaces' push
endpoints wired to order intake, and 1C's exchange when cloud.toml has `[onec]`), the teardown that
closes each request's database connection, and the error handlers."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from flask import Flask, g
from werkzeug.exceptions import HTTPException, InternalServerError

from cloud_sync.alerts.outbox import AlertConfigError, AlertSettings
from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig
from cloud_sync.config_sections import section_password
from cloud_sync.db import connect
from cloud_sync.onec.exchange import register_exchange
from cloud_sync.orders import intake, records
from cloud_sync.schema import open_db
from cloud_sync.service.accounts import AccountAdapters
from cloud_sync.stock import ledger
from cloud_sync.web import api, auth, errors, i18n, openapi, print_forms, push, redact
from cloud_sync.web.context import EXTENSION, ApiError, Context, close_db
from cloud_sync.web.pages import (
    attention,
    dashboard,
    home,
    orders,
    prices,
    products,
    reconcile,
    reports,
    rules,
    settings,
    sites,
    stocks,
)
from marketplaces import http as mp_http
from marketplaces.base import Marketplace, MarketplaceError

PAGES = (home, attention, dashboard, orders, products, prices, rules, stocks, reconcile, reports, sites, settings)


def create_app(config: CloudConfig, *, db_path: str | None = None, adapters: Mapping[str, Marketplace] | None = None,
               link: Any = None, pusher: Any = None, jobs: Any = None) -> Flask:
    redact.install()  # no secret in any log line of this process, whatever logs it
    redact.remember(config_secrets(config))
    app = Flask("marketsync.cloud")
    path = db_path or config.db_path
    open_db(path).close()
    # the service's own holder is shared (Settings swaps an account's adapter in it for everyone)
    shared = adapters if isinstance(adapters, AccountAdapters) else AccountAdapters(config, adapters)
    context = Context(config, path, shared, link, pusher, jobs)
    app.extensions[EXTENSION] = context

    app.register_blueprint(auth.bp)  # logins, sessions, CSRF, roles, API tokens: deny by default
    app.register_blueprint(api.bp)
    for page in PAGES:
        app.register_blueprint(page.bp)
    app.register_blueprint(print_forms.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(push.create_blueprint(config, context.adapters, functools.partial(_ingest_push, context)))
    proxies = auth.trusted_proxies(config)  # a wrong [auth] trusted_proxies stops the start, not the first login
    register_exchange(app, config, path,  # only when cloud.toml has [onec] with a password
                      address=functools.partial(auth.client_address, proxies))
    i18n.setup(app)  # the pages' language (the user's, else [ui] language) and the value formats

    app.teardown_appcontext(close_db)
    app.before_request(_a_person_waits)
    app.teardown_request(_jobs_pace_again)
    app.register_error_handler(HTTPException, errors.http_error)
    app.register_error_handler(InternalServerError, errors.internal_error)
    app.register_error_handler(RecursionError, errors.hostile_body)
    app.register_error_handler(OverflowError, errors.hostile_body)
    app.register_error_handler(ApiError, errors.api_error)
    for refusal in (ledger.StockError, catalog.CatalogError, records.OrderError):
        app.register_error_handler(refusal, errors.refused)
    app.register_error_handler(MarketplaceError, errors.marketplace_error)
    if jobs is not None:  # the running service: the dashboard's default figures are read before anyone asks
        dashboard.warm(path)
    return app


MARKETPLACE_ANSWER_S = 10.0  # a page's request gives a marketplace out of reach this long, retries included


def _a_person_waits() -> None:
    g.marketplace_deadline = mp_http.answer_within(MARKETPLACE_ANSWER_S)


def _jobs_pace_again(_exc: BaseException | None = None) -> None:
    token = g.pop("marketplace_deadline", None)
    if token is not None:
        mp_http.answer_as_jobs_do(token)


def config_secrets(config: CloudConfig) -> list[str]:
    """Every secret value cloud.toml gave this process: the accounts' credentials, the broker and 1C
    passwords, the alerts bot token (the log redaction blanks each wherever it appears)."""
    values = [str(v) for s in config.accounts.values() for v in s.account.credentials.values()]
    values.append(config.link.password)
    if config.onec is not None:
        try:
            values.append(section_password(config.onec))
        except OSError:  # an unreadable password file: the exchange is not served; nothing to blank
            pass
    if config.alerts is not None:
        try:
            values.append(AlertSettings.from_config(config.alerts).token)
        except AlertConfigError:  # the alerts job says so; nothing to blank
            pass
    return values


def _ingest_push(context: Context, account: str, event: Any) -> str:
    """A marketplace's push, once stored and acknowledged, goes to order intake (deduplicated with
    polling); it runs on the push worker's thread, so with a connection of its own."""
    conn = connect(context.db_path)
    try:
        outcome = intake.ingest_event(conn, context.cfg, account, event, adapter=context.adapters.get(account),
                                      link=context.link)
    finally:
        conn.close()
    context.wake()
    return outcome
