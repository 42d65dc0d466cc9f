"""The spec checks' fast path (jsonschema_rs over the spec turned into plain JSON Schema) gives the same
verdicts as openapi-core: a `oneOf` chosen by a `discriminator` (Yandex.Market's notification body) is
held to the alternative its discriminating value names, not to whichever alternative asks least."""

from __future__ import annotations

import json

import pytest

from marketplaces.sandbox import yandex_market_spec
from marketplaces.spec import _to_json_schema, load_specs

UPDATED_AT = "2026-12-07T10:00:00.000Z"


@pytest.fixture(scope="module")
def notification():
    yandex_market_spec.register()
    return load_specs("yandex_market_notification")


@pytest.mark.parametrize("body", [
    {"notificationType": "ORDER_STATUS_UPDATED", "orderId": 1, "campaignId": 2},  # no status/substatus/updatedAt
    {"notificationType": "ORDER_UPDATED", "orderId": 1, "campaignId": 2, "updatedAt": UPDATED_AT},  # no updateType
    {"notificationType": "ORDER_CREATED", "orderId": 1, "campaignId": 2},  # no items, createdAt
])
def test_a_notification_lacking_its_own_types_fields_is_refused(notification, body) -> None:
    errors = notification.request_errors("POST", "/notification", body=json.dumps(body).encode())
    assert errors and "required" in errors[0], errors


@pytest.mark.parametrize("body", [
    {"notificationType": "PING", "time": UPDATED_AT},
    {"notificationType": "ORDER_UPDATED", "orderId": 1, "campaignId": 2, "updatedAt": UPDATED_AT,
     "updateType": "SHIPMENT_DATE_UPDATED"},
    {"notificationType": "ORDER_STATUS_UPDATED", "orderId": 1, "campaignId": 2, "status": "PROCESSING",
     "substatus": "STARTED", "updatedAt": UPDATED_AT},
])
def test_a_whole_notification_passes(notification, body) -> None:
    assert notification.request_errors("POST", "/notification", body=json.dumps(body).encode()) == []


def test_only_a_fully_mapped_discriminator_guards_its_alternatives() -> None:
    mapped = {"oneOf": [{"$ref": "#/components/schemas/A"}, {"$ref": "#/components/schemas/B"}],
              "discriminator": {"propertyName": "kind",
                                "mapping": {"a": "#/components/schemas/A", "b": "#/components/schemas/B",
                                            "b2": "#/components/schemas/B"}}}
    assert _to_json_schema(mapped)["oneOf"] == [
        {"allOf": [{"$ref": "#/components/schemas/A"}, {"required": ["kind"], "properties": {"kind": {"enum": ["a"]}}}]},
        {"allOf": [{"$ref": "#/components/schemas/B"},
                   {"required": ["kind"], "properties": {"kind": {"enum": ["b", "b2"]}}}]}]
    partly = {**mapped, "discriminator": {"propertyName": "kind", "mapping": {"a": "#/components/schemas/A"}}}
    assert _to_json_schema(partly)["oneOf"] == mapped["oneOf"]  # B not mapped: as the spec says
