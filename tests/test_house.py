"""The house keeps its shape: no import circle anywhere, imports run one way between the parts and between
the cloud's floors, and every room says what it owns. Read from the source (nothing is imported): an
import inside a function counts like any other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIRCLES_TOOL = ROOT.parent / "shared" / "tools" / "import_circles.py"

# which parts each part may import (DESIGN.md): the edge installs on a Pi without the cloud's parts
PARTS_MAY_IMPORT = {
    "marketsync": {"cloud_sync", "edge_agent", "marketplaces", "sitelink", "web"},
    "cloud_sync": {"marketplaces", "sitelink", "web"},
    "edge_agent": {"sitelink", "web"},
    "marketplaces": set(),
    "sitelink": set(),
}

# the cloud's floors, top to bottom: a module may import its own floor or lower ones, never a higher one
FLOORS = [
    ("top", ("cloud_sync.web", "cloud_sync.cli", "cloud_sync.service.cloud", "cloud_sync.service.tenants",
             "cloud_sync.onec.exchange")),
    ("coordinator", ("cloud_sync.service", "cloud_sync.tenants")),
    ("schema", ("cloud_sync.schema",)),
    ("domain", ("cloud_sync.orders", "cloud_sync.money", "cloud_sync.alerts", "cloud_sync.onec",
                "cloud_sync.stock", "cloud_sync.catalog", "cloud_sync.access")),
    ("bottom", ("cloud_sync.db", "cloud_sync.leases", "cloud_sync.config", "cloud_sync.config_sections")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for part in PARTS_MAY_IMPORT:
        for path in (ROOT / part).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            found |= {f"{base}.{a.name}" for a in node.names} | {base}
    return found


def _floor(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, floor index): the most specific prefix decides
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), i)
    return None if best is None else best[1]


def test_no_import_circle_anywhere():
    result = subprocess.run([sys.executable, str(CIRCLES_TOOL), str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0 and "circles=0" in result.stdout, result.stdout + result.stderr


def test_parts_import_one_way():
    wrong = []
    for module, path in _modules().items():
        part = module.split(".")[0]
        for target in _imports(path, module):
            other = target.split(".")[0]
            if other in PARTS_MAY_IMPORT and other != part and other not in PARTS_MAY_IMPORT[part]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_cloud_floors_run_one_way():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        mine = _floor(module)
        if mine is None:
            continue
        for target in _imports(path, module):
            theirs = _floor(target)
            if theirs is not None and theirs < mine:
                upward.append(f"{module} ({FLOORS[mine][0]}) imports {target} ({FLOORS[theirs][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_every_cloud_room_says_what_it_owns():
    silent = [str(p.relative_to(ROOT)) for p in (ROOT / "cloud_sync").rglob("*.py")
              if ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None]
    assert not silent, f"modules without a docstring: {silent}"
