"""The test facility's fresh PostgreSQL schemas, made quickly: a copy of one schema migrated once.

Under `MARKETSYNC_PG_TEST_URL` (the suite's PostgreSQL leg, `cloud_sync.db`) every test opens a fresh
schema, and migrating one statement by statement costs ~2 s of round trips (hundreds of tables, indexes,
triggers and functions), most of the PostgreSQL leg's time. Instead, the first schema of a migration set
is migrated as in service into a template schema named after the set's fingerprint; `pg_dump` writes it
out once per process, and each fresh schema is that script with the name changed, run in one round trip
(~0.3 s). A changed migration list gives another fingerprint, so another template: a template never
stands for scripts it was not made from. Never used in service: the facility's URL is the only one it
serves.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Sequence

import psycopg

from cloud_sync import pg
from cloud_sync.pg_cluster import bin_dir

_dumps: dict[tuple[str, str], str] = {}  # (url, template schema) -> its dump, this process's copy


def fingerprint(parts: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A name for one migration set: its keys and scripts, both engines' text, and the layer's own part."""
    digest = hashlib.blake2b(digest_size=8)
    for text in pg.COMPAT:
        digest.update(text.encode())
    for key, scripts in parts:
        digest.update(key.encode() + b"\0")
        for script in scripts:
            digest.update(repr((type(script).__name__, str(script), getattr(script, "sqlite", ""))).encode())
    return "tpl_" + digest.hexdigest()


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"marketsync-template:{name}".encode(), digest_size=8).digest(),
                          "big", signed=True)


def _dump(url: str, template: str, make: Callable[[], object]) -> str:
    """The template's dump: made (under a cluster-wide lock: workers start together) by `make()` when the
    cluster has none yet, then read with pg_dump, once per process."""
    known = _dumps.get((url, template))
    if known is not None:
        return known
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("SELECT pg_advisory_lock(%s)", (_lock_key(template),))
        try:
            ready = raw.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s"
                                " AND table_name = 'schema_migrations'", (template,)).fetchone()
            if ready is None:
                make()
        finally:
            raw.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(template),))
    out = subprocess.run([str(bin_dir() / "pg_dump"), "--no-owner", "--no-privileges", "--inserts", "-n", template,
                          "-d", url], capture_output=True, text=True, check=True).stdout
    # psql's own meta-commands (\restrict) are not SQL; the schema itself exists already where it is copied
    lines = [line for line in out.splitlines() if not line.startswith("\\")]
    script = "\n".join(lines).replace(f"CREATE SCHEMA {template};", "")
    _dumps[(url, template)] = script
    return script


def clone_into(url: str, schema: str, parts: Sequence[tuple[str, Sequence[str]]],
               make: Callable[[str], object]) -> bool:
    """Fill the fresh `schema` with a copy of the migrated template of `parts` (`make(template)` migrates one
    when there is none). False, touching nothing, when `schema` holds anything already (a later open of
    a test's database, or another process that copied first: both wait on the schema's writer lock)."""
    template = fingerprint(parts)
    script = _dump(url, template, lambda: make(template))
    with psycopg.connect(url) as raw:  # one transaction: all of the copy or none of it
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (pg.writer_lock_key(schema),))  # the schema's writer lock (cloud_sync.pg)
        used = raw.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s LIMIT 1",
                           (schema,)).fetchone()
        if used is not None:
            return False
        raw.execute(script.replace(template, schema).encode())  # type: ignore[call-overload]
    return True


__all__ = ["clone_into", "fingerprint"]
