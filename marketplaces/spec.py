"""The official OpenAPI specs of the marketplaces, loaded for validation with openapi-core.

Owns: where the specs live (`<repo>/../shared/specs`, or the folder in `MARKETSYNC_SPECS`), which
files make up each marketplace (`SPEC_FILES`, extend with `register_spec_files`), and validating one
request or one response against them (`SpecSet.request_errors`, `SpecSet.response_errors`).

The files are used as published, with three adjustments made in memory only: every `servers` entry
is replaced by `/` (the sandbox serves all API families on one local port); the spec document itself
is not re-validated (some official files break the meta-schema in harmless places, e.g. a numeric
`info.version`); and `pattern`s that are human date templates ("YYYY-MM-DD...") are dropped. A file
answer (PDF, image) is checked for documented status and media type only. Used by the sandboxes and by the contract tests; adapters do not need it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from werkzeug.datastructures import Headers, ImmutableMultiDict

REPO_ROOT = Path(__file__).resolve().parents[1]

SPEC_FILES: dict[str, list[str]] = {
    "wildberries": [
        "wildberries/03-orders-fbs.yaml",
        "wildberries/02-items.yaml",
        "wildberries/13-finances.yaml",
        "wildberries/01-general.yaml",
        "wildberries/10-rates.yaml",
        "wildberries/11-analytics.yaml",
    ],
    "ozon": ["ozon/ozon-seller-api-swagger.json"],
}


def register_spec_files(marketplace: str, files: list[str]) -> None:
    """Declare the spec files (relative to the specs folder) of a marketplace; first match wins."""
    SPEC_FILES[marketplace] = list(files)
    load_specs.cache_clear()


def specs_root() -> Path:
    """The folder of the official specs: `$MARKETSYNC_SPECS`, else `<repo>/../shared/specs`."""
    env = os.environ.get("MARKETSYNC_SPECS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "specs"


class SpecMissing(RuntimeError):
    """The spec files are not where they should be."""


@dataclass
class _Req:
    """A request in the shape openapi-core reads (its Request + SupportsPathPattern protocols)."""

    method: str
    path: str
    path_pattern: str
    body: bytes | None
    content_type: str
    parameters: Any
    host_url: str = "http://127.0.0.1"

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path_pattern


@dataclass
class _Resp:
    status_code: int
    content_type: str
    headers: Any
    data: bytes | None


def _strip_servers(doc: dict[str, Any]) -> dict[str, Any]:
    for item in doc.get("paths", {}).values():
        if isinstance(item, dict):
            item.pop("servers", None)
            for op in item.values():
                if isinstance(op, dict):
                    op.pop("servers", None)
    doc["servers"] = [{"url": "/"}]
    return doc


def _drop_placeholder_patterns(node: Any) -> None:
    """Ozon's file puts human date templates in `pattern` (" YYYY-MM-DDThh:mm:ss.mcsZ"), which no real
    date matches as a regex: such patterns are documentation, not constraints, and are dropped."""
    if isinstance(node, dict):
        pat = node.get("pattern")
        if isinstance(pat, str) and ("YYYY" in pat or "hh:mm" in pat):
            del node["pattern"]
        for value in node.values():
            _drop_placeholder_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _drop_placeholder_patterns(value)


_TYPE_ALIASES = {"int": "integer"}  # a schema `type` some spec files write in a programmer's word


def _fix_type_aliases(node: Any) -> None:
    """Ozon's file types some fields `"type": "int"` (e.g. the id of /v2/posting/fbs/act/get-postings),
    which JSON Schema does not know (every validator refuses to compile it) and whose `format: int64`
    says what is meant: such a type is read as the JSON Schema word."""
    if isinstance(node, dict):
        kind = node.get("type")
        if isinstance(kind, str) and kind in _TYPE_ALIASES:
            node["type"] = _TYPE_ALIASES[kind]
        for value in node.values():
            _fix_type_aliases(value)
    elif isinstance(node, list):
        for value in node:
            _fix_type_aliases(value)


def _fix_ambiguous_one_of(doc: dict[str, Any]) -> None:
    """WB's 10-rates.yaml answers `tariffs/commission` with `oneOf` Fee / FeeChina / FeeTurkey / ...: object
    shapes with no required field and open properties, so every real answer matches several of them and
    a strict `oneOf` refuses it. A `oneOf` whose alternatives are all such open objects is read as the
    `anyOf` it means ("one of these shapes"); a `oneOf` any alternative of which requires a field or is
    closed stays strict."""
    schemas = (doc.get("components") or {}).get("schemas") or {}

    def resolved(alt: Any) -> Any:
        ref = alt.get("$ref", "") if isinstance(alt, dict) else ""
        return schemas.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/components/schemas/") else alt

    def open_object(alt: Any) -> bool:
        alt = resolved(alt)
        return (isinstance(alt, dict) and alt.get("type") == "object" and not alt.get("required")
                and alt.get("additionalProperties", True) is not False)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            alts = node.get("oneOf")
            if isinstance(alts, list) and len(alts) > 1 and sum(open_object(a) for a in alts) >= len(alts) - 1 \
                    and all(isinstance(resolved(a), dict) and resolved(a).get("type") == "object"
                            and not resolved(a).get("required") for a in alts):
                node["anyOf"] = node.pop("oneOf")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


def _load_doc(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SpecMissing(f"spec file not found: {path} (set MARKETSYNC_SPECS to the specs folder)")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # LibYAML's, where PyYAML was built with it
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


_DROP_KEYS = {"nullable", "discriminator", "example", "examples", "xml", "externalDocs", "deprecated",
              "readOnly", "writeOnly", "description", "title"}


def _to_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema (draft 4): `nullable` becomes a null alternative."""
    if isinstance(node, list):
        return [_to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k not in _DROP_KEYS and not k.startswith("x-")}
    guarded = _discriminated(node)
    if guarded is not None:
        out["oneOf"] = guarded
    if isinstance(node.get("properties"), dict):  # property names are data, not keywords
        out["properties"] = {k: _to_json_schema(v) for k, v in node["properties"].items()}
    if node.get("nullable") is True:
        if "$ref" in out or "type" not in out:
            return {"anyOf": [out, {"type": "null"}]}
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types + ["null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    return out


def _discriminated(node: dict[str, Any]) -> list[Any] | None:
    """A `oneOf` of `$ref`s with a `discriminator` mapping every one of them (Yandex.Market's notification
    body: PING, ORDER_CREATED, ...) as plain JSON Schema: each alternative also requires the discriminating
    property to hold one of the values mapped to it. Without this the discriminator was dropped and a body
    matched whichever alternative asks least (PingNotificationDTO requires nothing), so an ORDER_UPDATED
    lacking its updateType passed. None where the node is not such a `oneOf`."""
    alts, disc = node.get("oneOf"), node.get("discriminator")
    if not isinstance(alts, list) or not isinstance(disc, dict) or not isinstance(disc.get("mapping"), dict):
        return None
    prop = disc.get("propertyName")
    values: dict[str, list[str]] = {}
    for value, ref in disc["mapping"].items():
        values.setdefault(str(ref), []).append(str(value))
    refs = [a.get("$ref") if isinstance(a, dict) else None for a in alts]
    if not isinstance(prop, str) or any(r not in values for r in refs):
        return None  # an alternative the mapping does not name: left as the spec says
    return [{"allOf": [{"$ref": r}, {"required": [prop], "properties": {prop: {"enum": sorted(values[r])}}}]}
            for r in refs]


class _Fast:
    """jsonschema_rs validators compiled from the spec's schemas, one per schema location.

    A value the fast validator accepts is accepted; anything it refuses (or cannot compile) goes to
    openapi-core's own validator, which decides and explains. Same verdicts, far less CPU."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.components = {"schemas": _to_json_schema(doc.get("components", {}).get("schemas", {}))}
        self.cache: dict[tuple[str, ...], Any] = {}
        self.lock = threading.Lock()

    def validator(self, parts: tuple[str, ...]) -> Any:
        with self.lock:
            if parts in self.cache:
                return self.cache[parts]
        try:
            import jsonschema_rs  # lazy: an optional accelerator, not a dependency; absent, openapi-core decides

            node: Any = self.doc
            for part in parts:
                node = node[part]
            root = _to_json_schema(node)
            if not isinstance(root, dict):
                raise TypeError("not a schema")
            root = {"allOf": [root], "components": self.components} if "$ref" in root else \
                dict(root, components=self.components)
            compiled = jsonschema_rs.Draft4Validator(root)
        except Exception:  # noqa: BLE001 - anything odd: leave it to openapi-core
            compiled = None
        with self.lock:
            self.cache[parts] = compiled
        return compiled


def _fast_factory(fast: _Fast) -> Any:
    # lazy: openapi-core takes ~0.7 s to import; only validating an exchange needs it
    from openapi_core.validation.schemas import oas30_write_schema_validators_factory as base
    from openapi_core.validation.schemas.factories import SchemaValidatorsFactory
    from openapi_core.validation.schemas.validators import SchemaValidator

    class FastSchemaValidator(SchemaValidator):
        def validate(self, value: Any) -> None:
            compiled = fast.validator(tuple(self.schema.parts))
            if compiled is not None:
                try:
                    if compiled.is_valid(value):
                        return
                except Exception:  # noqa: BLE001 - a value it cannot take: the slow path decides
                    pass
            super().validate(value)

    class FastFactory(SchemaValidatorsFactory):
        def create(self, *args: Any, **kwargs: Any) -> SchemaValidator:
            made = base.create(*args, **kwargs)
            return FastSchemaValidator(made.schema, made.validator)

    return FastFactory(base.schema_validator_cls, base.format_checker)


class _File:
    def __init__(self, path: Path) -> None:
        from openapi_core import Config  # lazy: openapi-core takes ~0.7 s to import; only validation needs it

        self.path = path
        self.doc = _strip_servers(_load_doc(path))
        _drop_placeholder_patterns(self.doc)
        _fix_type_aliases(self.doc)
        _fix_ambiguous_one_of(self.doc)
        self._config = Config(spec_validator_cls=None,
                              schema_validators_factory=_fast_factory(_Fast(self.doc)),
                              extra_media_type_deserializers={"application/problem+json": json.loads})
        self._apis: dict[str, Any] = {}
        self._api_lock = threading.Lock()
        self.routes: list[tuple[str, re.Pattern[str], str]] = []  # (method, regex, template)
        for template, item in self.doc.get("paths", {}).items():
            regex = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(template)) + "$")
            names = re.findall(r"\{([^/]+?)\}", template)
            for method in item:
                if method in ("get", "post", "put", "patch", "delete"):
                    self.routes.append((method, regex, template))
            self._names = names
        # literal templates first, so /orders/new wins over /orders/{orderId}
        self.routes.sort(key=lambda r: r[2].count("{"))

    def api(self, template: str) -> Any:
        """openapi-core's OpenAPI over this one path (and all components): finding the operation in a
        380-path document costs more than validating the body."""
        from openapi_core import OpenAPI  # lazy: as above

        with self._api_lock:
            api = self._apis.get(template)
            if api is None:
                doc = {k: v for k, v in self.doc.items() if k != "paths"}
                doc["paths"] = {template: self.doc["paths"][template]}
                api = self._apis[template] = OpenAPI.from_dict(doc, config=self._config)
            return api

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        for m, regex, template in self.routes:
            if m == method:
                hit = regex.match(path)
                if hit:
                    names = re.findall(r"\{([^/]+?)\}", template)
                    return template, dict(zip(names, hit.groups(), strict=False))
        return None


class SpecSet:
    """All spec files of one marketplace; validates requests and responses against them."""

    def __init__(self, marketplace: str, files: list[Path]) -> None:
        self.marketplace = marketplace
        self.files = [_File(f) for f in files]
        self._lock = threading.Lock()

    def find(self, method: str, path: str) -> tuple[_File, str, dict[str, str]] | None:
        """The spec file, path template and path parameters documenting `method path`, if any."""
        for f in self.files:
            hit = f.match(method.lower(), path)
            if hit:
                return f, hit[0], hit[1]
        return None

    def documented(self, method: str, path: str) -> bool:
        return self.find(method, path) is not None

    def _request(self, method: str, path: str, query: dict[str, Any] | None, headers: dict[str, str] | None,
                 body: bytes | None, content_type: str) -> tuple[_File, _Req] | None:
        from openapi_core.datatypes import RequestParameters  # lazy: openapi-core, only for validation

        found = self.find(method, path)
        if found is None:
            return None
        f, template, path_params = found
        q = ImmutableMultiDict([(k, str(x)) for k, v in (query or {}).items()  # a list: a repeated key
                                for x in (v if isinstance(v, list) else [v])])
        params = RequestParameters(query=q, header=Headers(list((headers or {}).items())),
                                   cookie=ImmutableMultiDict(), path=path_params)
        ctype = (content_type or "").lower()
        return f, _Req(method.lower(), path, template, body if body else None, ctype, params)

    def request_errors(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                       headers: dict[str, str] | None = None, body: bytes | None = None,
                       content_type: str = "application/json") -> list[str]:
        """Why this request breaks the spec ([] when it conforms, ['undocumented ...'] when unknown)."""
        built = self._request(method, path, query, headers, body, content_type)
        if built is None:
            return [f"undocumented operation {method.upper()} {path}"]
        f, req = built
        try:
            f.api(req.path_pattern).validate_request(req)
        except Exception as exc:  # openapi-core raises a family of errors; all mean "does not conform"
            return [_describe(exc)]
        return []

    def _binary_errors(self, f: _File, req: _Req, status: int, ctype: str) -> list[str]:
        types = _media_types(f, req.path_pattern, req.method, status)
        if types is None:
            return [f"ResponseNotFound: status {status} is not documented for {req.method.upper()} {req.path_pattern}"]
        if types and ctype not in types:
            return [f"MediaTypeNotFound: {ctype} is not documented for {status} (documented: {types})"]
        return []

    def response_errors(self, method: str, path: str, status: int, *, body: bytes | None,
                        content_type: str, headers: dict[str, str] | None = None,
                        query: dict[str, Any] | None = None, request_headers: dict[str, str] | None = None,
                        request_body: bytes | None = None) -> list[str]:
        """Why this response breaks the spec for that request ([] when it conforms)."""
        built = self._request(method, path, query, request_headers, request_body, "application/json")
        if built is None:
            return [f"undocumented operation {method.upper()} {path}"]
        f, req = built
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype in BINARY_TYPES or ctype.startswith("image/"):
            # a file: the spec can only say which status and media type; a body schema on a PDF
            # (Ozon package-label) cannot apply to its bytes
            return self._binary_errors(f, req, status, ctype)
        resp = _Resp(status, (content_type or "").lower(), Headers(list((headers or {}).items())),
                     body if body else None)
        try:
            f.api(req.path_pattern).validate_response(req, resp)
        except Exception as exc:
            return [_describe(exc)]
        return []


BINARY_TYPES = {"application/pdf", "application/octet-stream", "application/zip"}


def _media_types(f: _File, template: str, method: str, status: int) -> list[str] | None:
    def deref(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = f.doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node = target
        return node

    op = deref(f.doc["paths"][template].get(method, {}))
    responses = deref(op.get("responses", {}))
    entry = deref(responses.get(str(status)) or responses.get("default"))
    if not entry:
        return None
    return list((entry.get("content") or {}).keys())


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"[:300]]
    cause = exc.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        seen: list[str] = []
        for err in schema_errors:
            where = "/".join(str(p) for p in getattr(err, "absolute_path", []))
            text = f"{where}: {getattr(err, 'message', err)}"[:200]
            if text not in seen:
                seen.append(text)
            if len(seen) >= 5:
                break
        parts.append("; ".join(seen))
    elif cause is not None:
        parts.append(f"{type(cause).__name__}: {cause}"[:300])
    return " | ".join(parts)


@functools.cache
def load_specs(marketplace: str) -> SpecSet:
    """The (cached) spec set of a marketplace named in `SPEC_FILES`."""
    try:
        files = SPEC_FILES[marketplace]
    except KeyError:
        raise SpecMissing(f"no spec files registered for {marketplace!r}") from None
    root = specs_root()
    return SpecSet(marketplace, [root / f for f in files])
