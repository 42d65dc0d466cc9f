"""The `marketsync` command line: one table of subcommands, each owned by the part it runs.

Every entry names a module and a function `main(argv: list[str]) -> int`; the module is imported only
when its command runs, so `marketsync edge ...` never imports the cloud or the marketplaces.
"""

from __future__ import annotations

import importlib
import sys

from marketsync import __version__

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, function, one line of help)
    "demo": ("marketsync.demo", "main", "run a whole seller's day on this machine"),
    "soak": ("marketsync.soak", "main", "the demo under faults from outside, then judged from outside"),
    "sandbox": ("marketplaces.sandbox.cli", "main", "serve a local sandbox of a marketplace API"),
    "link": ("cloud_sync.cli.link", "main", "the cloud<->site link: status, dead letters, broker config, keys"),
    "cloud": ("cloud_sync.cli.cloud", "cloud_main", "run the central service (cloud serve)"),
    "tenant": ("cloud_sync.cli.tenants", "main", "several sellers on one installation: tenant add ID, tenant list"),
    "sync": ("cloud_sync.cli.cloud", "sync_main", "sync cards|stocks|prices|orders|reports with the marketplaces"),
    "stock": ("cloud_sync.cli.cloud", "stock_main", "stock ledger questions (stock why ITEM --account A)"),
    "orders": ("cloud_sync.cli.orders", "main", "orders: export (jsonl|csv|xlsx), retry a waiting order"),
    "reconcile": ("cloud_sync.cli.reconcile", "main", "сверка остатков: 1С, учёт и площадки (last line JSON)"),
    "onec": ("cloud_sync.cli.onec", "main", "1C exchange: import CommerceML files"),
    "edge": ("edge_agent.cli", "main", "run the warehouse site agent (edge serve)"),
    "decode": ("edge_agent.decode", "main", "decode barcodes in image files, one JSON line per file"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: marketsync COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"marketsync: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    try:
        # lazy: only the command that runs is imported, so an edge box needs none of the cloud's parts
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"marketsync {name}: cannot start, a part is missing: {exc}", file=sys.stderr)
        return 3
    return int(getattr(module, func_name)(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
