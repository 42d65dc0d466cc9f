"""Yandex.Market's official OpenAPI trees (Partner API, Notification API) made loadable in one piece.

Owns: bundling the published multi-file specs (`openapi.yaml` + `paths/*.yaml` + `components/*/*.yaml`
linked by relative `$ref`s) into one JSON document per API, in memory, with every file reference turned
into a local `#/components/...` reference, and registering those bundles with `marketplaces.spec` under
the names `yandex_market` (Partner API) and `yandex_market_notification` (Notification API).

The bundle is written to a cache folder (never into the repo: it is Yandex's text), keyed by the spec
files' names, sizes and times, so each process builds it at most once. Call `register()` before
`marketplaces.spec.load_specs("yandex_market")`; it is idempotent. Also reads the vendor extension
`x-resource-limit-config` for the endpoint map's tests (`resource_limits()`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from marketplaces import spec

PARTNER = "yandex_market/partner-api/openapi/openapi.yaml"
NOTIFICATION = "yandex_market/notification-api/openapi/openapi.yaml"
NAMES = {"yandex_market": PARTNER, "yandex_market_notification": NOTIFICATION}
_KINDS = ("schemas", "parameters", "responses", "requestBodies", "headers", "examples")


def _load_yaml(path: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # LibYAML's, where PyYAML was built with it
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader


def bundle(entry: Path) -> dict[str, Any]:
    """One self-contained OpenAPI document from a multi-file tree rooted at `entry`."""
    entry = entry.resolve()
    root_doc = _load_yaml(entry)
    components: dict[str, dict[str, Any]] = {}
    done: set[tuple[str, str]] = set()
    pending: list[tuple[str, str, Path]] = []

    def local_ref(target: Path) -> str | None:
        parts = target.parts
        if "components" in parts:
            i = len(parts) - 1 - parts[::-1].index("components")
            if i + 2 < len(parts) + 1 and len(parts) > i + 2:
                kind, name = parts[i + 1], Path(parts[i + 2]).stem
                if kind in _KINDS:
                    if (kind, name) not in done:
                        done.add((kind, name))
                        pending.append((kind, name, target))
                    return f"#/components/{kind}/{name}"
        return None

    def rewrite(node: Any, base: Path) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                    file_part, _, frag = value.partition("#")
                    target = (base.parent / file_part).resolve()
                    ref = local_ref(target)
                    if ref is not None and not frag:
                        out["$ref"] = ref
                    else:  # a non-component file (a path item): inline it
                        inlined = rewrite(_load_yaml(target), target)
                        for p in [x for x in frag.split("/") if x]:
                            inlined = inlined[p]
                        out.update(inlined)
                elif key == "discriminator" and isinstance(value, dict) and "mapping" in value:
                    mapping = {}
                    for k, v in value["mapping"].items():
                        target = (base.parent / v.partition("#")[0]).resolve()
                        mapping[k] = (local_ref(target) or v) if not v.startswith("#") else v
                    out[key] = {**value, "mapping": mapping}
                else:
                    out[key] = rewrite(value, base)
            return out
        if isinstance(node, list):
            return [rewrite(v, base) for v in node]
        return node

    doc = rewrite(root_doc, entry)
    while pending:
        kind, name, target = pending.pop()
        components.setdefault(kind, {})[name] = rewrite(_load_yaml(target), target)
    merged = dict(doc.get("components") or {})
    for kind, items in components.items():
        merged[kind] = {**merged.get(kind, {}), **items}
    doc["components"] = merged
    return doc


def _fingerprint(entry: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(entry.parent.rglob("*.yaml")):
        st = p.stat()
        h.update(f"{p.relative_to(entry.parent)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(tempfile.gettempdir(), f"marketsync-{os.getuid()}")
    return Path(base) / "marketsync-specs"


def bundled_file(name: str) -> Path:
    """The bundled JSON of `yandex_market` or `yandex_market_notification`, built if missing."""
    entry = spec.specs_root() / NAMES[name]
    if not entry.exists():
        raise spec.SpecMissing(f"spec file not found: {entry} (set MARKETSYNC_SPECS to the specs folder)")
    out = cache_dir() / f"{name}-{_fingerprint(entry)}.json"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(bundle(entry), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, out)
    return out


def register() -> None:
    """Make `marketplaces.spec.load_specs` know both Yandex.Market specs (idempotent)."""
    for name in NAMES:
        path = str(bundled_file(name))
        if spec.SPEC_FILES.get(name) != [path]:
            spec.register_spec_files(name, [path])


def resource_limits() -> dict[str, dict[str, Any]]:
    """operationId -> {"method", "path", "limit": {...x-resource-limit-config...}} from the Partner API."""
    doc = json.loads(bundled_file("yandex_market").read_text(encoding="utf-8"))
    out: dict[str, dict[str, Any]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "operationId" in op:
                out[op["operationId"]] = {"method": method.upper(), "path": path,
                                          "limit": op.get("x-resource-limit-config") or {},
                                          "deprecated": bool(op.get("deprecated"))}
    return out
