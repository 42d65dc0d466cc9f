"""The JSON API against its own OpenAPI document (/api/openapi.json): schemathesis generates calls for
every operation (with an API token) and checks that none fails with a server error and every answer
matches the document (status codes, content type, body schema)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from cloud_sync.access import users
from cloud_sync.config import parse_config
from cloud_sync.schema import open_db
from cloud_sync.web.app import create_app

# Business refusals (422: an unknown account, a cancel without a reason) cannot be told apart from
# schema-valid data, so "positive data accepted" is not asked; everything else is.
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.ignored_auth]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    db = tmp_path_factory.mktemp("openapi") / "cloud.sqlite"
    cfg = parse_config({"cloud": {"db_path": str(db)},
                        "accounts": {"wb1": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9"}}})
    conn = open_db(cfg.db_path)
    users.add_user(conn, "api", "api password 123", "owner")
    token = users.new_token(conn, "api", "schemathesis")
    conn.close()
    app = create_app(cfg)
    return app, token


def test_api_matches_its_openapi_document(api):
    app, token = api
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 18
    failures: list[str] = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation's failure
            failures.append(f"{op.label}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)


def test_the_document_is_served_without_login_and_lists_the_operations(api):
    doc = api[0].test_client().get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.0")
    assert {"/api/orders", "/api/prices/preview", "/api/prices/apply", "/api/orders/bulk"} <= set(doc["paths"])
