"""The cloud's second engine: PostgreSQL behind the `sqlite3.Connection` surface the cloud already speaks.

Owns the PostgreSQL connection (`connect`), the translation of the cloud's SQLite-flavoured SQL into
PostgreSQL (`translate`), the mapping of PostgreSQL errors onto the `sqlite3` exception classes, the write
transaction that keeps SQLite's BEGIN IMMEDIATE promise, and the PostgreSQL-only schema part (`COMPAT`:
functions and a view the SQLite side has built in).

Why this design (psycopg 3 + sqlglot + a thin connection class) and not SQLAlchemy Core: the cloud's domain
holds ~570 hand-written SQLite statements in dozens of modules that several people change at once. Porting
them to a query builder would touch every one of them; here they stay as they are and run on both engines:

* **Driver**: psycopg 3 (the maintained PostgreSQL driver; server-side prepared statements after a few
  executions of the same SQL, binary wheels, thread-safe connections like the `check_same_thread=False`
  SQLite ones the cloud shares between threads).
* **Dialect**: sqlglot, a maintained SQL transpiler, parses each distinct SQLite statement once (the result
  is cached per SQL string) and writes it as PostgreSQL; own transforms cover what it leaves: `INSERT OR
  IGNORE/REPLACE`, `WITHOUT ROWID`, `INTEGER PRIMARY KEY` as an auto-numbered key (`lastrowid` is read with
  `RETURNING`), `REAL` as double precision and `INTEGER` as bigint, bare integer columns used as conditions,
  case-insensitive `LIKE` (SQLite's LIKE ignores ASCII case: `ILIKE`), `PRAGMA`s (answered or ignored),
  `sqlite_master` (a view), SQLite's date functions and `fold()` (SQL functions of `COMPAT`).
* **DDL that cannot translate** (triggers): a module gives a PostgreSQL version of that migration script in
  `MIGRATIONS_PG = {index: script}`; the runner records it in `schema_migrations` under the same index, so
  both engines keep one append-only list.
* **Errors**: `IntegrityError`, `OperationalError`, ... subclass the `sqlite3` ones (the PostgreSQL error is
  chained as `__cause__`), so the domain's `except sqlite3.IntegrityError` holds on both engines. A failed
  statement inside a transaction is rolled back to a savepoint taken before it, so the transaction goes on
  as on SQLite (PostgreSQL would otherwise refuse every later statement of it).
* **Transactions**: SQLite's BEGIN IMMEDIATE makes writers of one database run one after another, and the
  domain relies on it (it reads, decides, then writes). Here `BEGIN IMMEDIATE` is `BEGIN` plus
  `pg_advisory_xact_lock(<the schema's key>)`: the same one-writer-at-a-time rule per database (schema),
  across processes and hosts, released at COMMIT/ROLLBACK. Its cost: write transactions of one tenant do
  not run in parallel (as on SQLite), reads never wait for it.
* **Keyed transactions** (a reader-writer scheme on the same advisory locks): a hot path whose writes stay
  within known parts of the store opts in with `sitelink.sqlite.transaction(conn, keys=[...])`; here that is
  BEGIN, the schema's writer lock taken SHARED (`pg_advisory_xact_lock_shared`), then one EXCLUSIVE advisory
  lock per key (`key_lock`), in the order of their numbers, all at BEGIN (so keyed transactions never wait
  for each other in a circle). Keyed transactions of different keys run at once; two of one key one after the
  other; every ordinary BEGIN IMMEDIATE (the default, unchanged) takes the writer lock EXCLUSIVE and so
  still excludes them all, and a keyed one queued behind it waits for it (PostgreSQL grants in order). A
  write inside a keyed transaction that its keys do not cover says so (`sitelink.sqlite.need`, called by the
  domain's write functions: a stock level, a reservation, a waiting order served) and raises
  `NeedsExclusive`: the caller rolls back and does the work again in an ordinary transaction. Rows that
  keyed transactions of different keys share (an item's stock level raised by two sites, an item's dirty
  mark) are written at COMMIT (`defer`; a savepoint rolled back drops what it deferred), each in one atomic
  statement, in key order, after all other writes. Who opts in: each account's stock sender (`push:<account>`)
  and its zero guard, its status re-reads and returns poll marks, the cloud's site link for a round of
  `stock_delta`s that only add units (`link:<site>` and the site's source row; `cloud_sync.stock.ledger`) and
  for a round of acknowledgements and states, a marketplace action's outcome (`order:<id>`, and its site's link
  for a label: `cloud_sync.orders.mp_actions.outcome_keys`), a batch of new orders (`orders:intake`, the levels
  it reserves, its sites' links, its accounts' push keys: `cloud_sync.orders.intake.intake_keys`; its
  reservations are written at COMMIT too), an account's FBO reading (`fbo:<account>`), prices and fees read
  back (`prices:<account>`, `fees:<account>`), a marketplace's push stored before it is answered
  (`push_events:<account>`: `cloud_sync.orders.pushes.store_keys`; its wait bounded by `set_lock_wait`), and
  the leases' many-row writes (`leases`; their one-statement writes run outside any transaction and take no
  lock). The orders' history (read by id) is written at COMMIT,
  last, under one more key taken then (`take_key`; `cloud_sync.orders.history`). `cloud_sync.db.keyed_or_whole`
  runs a piece of work keyed and, when it gives way, again as an ordinary transaction. `keys=()` is a
  keyed transaction with no key of its own: for one atomic statement whose row lock decides (a claim). On SQLite the same calls are BEGIN IMMEDIATE.

* **Connection pool**: psycopg_pool (psycopg's own pool library), one pool per database (URL) for every
  schema of it: `connect` draws a connection from the pool of its URL and `Connection.close()` gives it
  back, so a web request (one connection each) or a job round does not pay a new PostgreSQL connection (a
  process fork and an authentication on the server) each time, and a process holds at most `POOL_MAX`
  pooled connections however many sellers (schemas) it serves. The seller's schema is set on checkout:
  `SET search_path` (as `set_config`) only when the connection's current one differs (tracked per server
  connection, `_Raw`); a schema named by the caller is created once per process when missing; a URL's own
  `options=-csearch_path=...` (a seller's store URL, `cloud_sync.tenants.schema_url`) is that checkout's
  search_path, not a pool of its own. The domain's statements carry their schema's name as a leading
  comment (`statement_tag`), so psycopg's server-side prepared statements are per schema (one schema's
  plan never serves another's, whose table may differ while sellers are migrated in turn). Given back
  means: anything open rolled back at once (its savepoints and the writer lock with it), session-level
  locks released, temporary tables dropped and the search_path compared with what the checkout set
  (changed by its user: set again by the next checkout, whatever it asks; `_reset`), all before the
  connection is back in the pool; the wrapper itself is closed for good (its trace callback gone, every
  later call an error, as sqlite3's). A wrapper dropped without `close()` gives its connection back when
  collected. A pool keeps at most `POOL_MAX` connections, closes one idle for `POOL_IDLE_S`, and at most
  `POOLS_MAX` pools (databases) live in a process (the least recently used is closed). The service's job
  threads and stock senders give theirs back while they wait (`cloud_sync.service.jobs`). When all
  `POOL_MAX` are lent, or the pool has nothing to give within `POOL_WAIT_S` (the server is down), a
  connection of its own is opened instead, at once (and a down server is still said in words without the
  password). `pooling = False` switches it off (the benches' baseline).

Rows are `Row`s: by index and by name, `keys()`, `dict(row)` — as `sqlite3.Row`. Integers are sent as
untyped literals so that PostgreSQL types them by their column (SQLite does not care either), booleans as
0/1, a NUL character of a string as U+FFFD (PostgreSQL's text cannot hold it), and NUMERIC results (SUM of
bigint) come back as int or float.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import queue
import re
import sqlite3
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import sqlglot
from psycopg import pq
from psycopg.adapt import Dumper, Loader
from psycopg.types.string import StrDumperUnknown, TextLoader
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
from sqlglot import exp

from sitelink.sqlite import statements

SCHEMES = ("postgresql://", "postgres://")


def is_url(target: object) -> bool:
    """Whether a database target is a PostgreSQL URL (anything else is an SQLite file path)."""
    return isinstance(target, str) and target.startswith(SCHEMES)  # startswith reads the text, not str()


def redact(url: str) -> str:
    """The URL with its password replaced by `***` (for logs and error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[1]}"))


class Url(str):
    """A PostgreSQL URL that shows itself without its password (repr, str, f-strings, logs): the config's
    `db_path` when [db] url is set. `reveal()` is the URL itself, for the driver alone."""

    def reveal(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return repr(redact(self.reveal()))

    def __str__(self) -> str:
        return redact(self.reveal())

    def __format__(self, spec: str) -> str:
        return format(redact(self.reveal()), spec)


def reveal(url: object) -> str:
    return url.reveal() if isinstance(url, Url) else str(url)


# -- errors: the sqlite3 classes the domain catches, with the PostgreSQL error chained ----------------------


class Error(sqlite3.Error):
    """A PostgreSQL error seen through the `sqlite3` classes (`__cause__` is psycopg's)."""


class IntegrityError(sqlite3.IntegrityError, Error):
    pass


class OperationalError(sqlite3.OperationalError, Error):
    pass


class ProgrammingError(sqlite3.ProgrammingError, Error):
    pass


class DataError(sqlite3.DataError, Error):
    pass


class InterfaceError(sqlite3.InterfaceError, Error):
    pass


def _mapped(exc: psycopg.Error, sql: str) -> Error:
    if isinstance(exc, psycopg.IntegrityError):
        cls: type[Error] = IntegrityError
        msg = f"constraint failed: {exc}"  # SQLite's messages say "... constraint failed"
    elif isinstance(exc, psycopg.errors.RaiseException):
        cls, msg = IntegrityError, str(exc)  # RAISE(ABORT, ...) of a trigger: SQLite's IntegrityError
    elif isinstance(exc, (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)):
        cls, msg = OperationalError, f"database is locked ({exc})"
    elif isinstance(exc, psycopg.DataError):
        cls, msg = DataError, str(exc)
    elif isinstance(exc, psycopg.ProgrammingError):
        cls, msg = OperationalError, f"{exc} [SQL: {sql[:300]}]"
    elif isinstance(exc, psycopg.InterfaceError):
        cls, msg = InterfaceError, str(exc)
    else:
        cls, msg = OperationalError, str(exc)
    return cls(msg)


# -- rows ---------------------------------------------------------------------------------------------


class Row(tuple):
    """A result row addressable by index and by (case-insensitive) column name, as `sqlite3.Row`."""

    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key.lower()])
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_class(names: Sequence[str]) -> type[Row]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name.lower(), i)
    return type("Row", (Row,), {"_names": tuple(names), "_index": index, "__slots__": ()})


# -- adaptation ------------------------------------------------------------------------------------------


class _UntypedInt(Dumper):
    """int and bool as an untyped literal: PostgreSQL types it by its use (a TEXT or BIGINT column)."""

    oid = 0

    def dump(self, obj: Any) -> bytes:
        return str(int(obj)).encode()


class _NulFreeStr(StrDumperUnknown):
    """A string as psycopg sends it, a NUL character as U+FFFD: PostgreSQL's text cannot hold NUL (psycopg
    refuses to send it: a DataError, a 500 for `?account=%00`), SQLite's can. A lookup of such a value
    finds nothing on either engine; a value written keeps every other character."""

    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)


class _Numeric(Loader):
    """NUMERIC (SUM and AVG of integers) as int when whole, else float — as SQLite gives it."""

    def load(self, data: Any) -> Any:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() and "." not in bytes(data).decode() else float(value)


def _adapt(conn: psycopg.Connection) -> None:
    conn.adapters.register_dumper(str, _NulFreeStr)
    conn.adapters.register_dumper(int, _UntypedInt)
    conn.adapters.register_dumper(bool, _UntypedInt)
    conn.adapters.register_loader("numeric", _Numeric)
    conn.adapters.register_loader("json", TextLoader)  # SQLite's JSON functions give text: json.loads reads it
    conn.adapters.register_loader("jsonb", TextLoader)


# -- translation --------------------------------------------------------------------------------------------

_P = "zzqp"  # placeholder marker prefix while the SQL is generated (never a real name)
_OR_ACTION = re.compile(r"^\s*(INSERT\s+OR\s+(IGNORE|REPLACE)|REPLACE)\s+INTO\s+", re.I)
_PRAGMA = re.compile(r"^\s*PRAGMA\s+(\w+)\s*(?:\((\w+)\)|=\s*(.+))?\s*;?\s*$", re.I | re.S)


class Translated:
    """One SQLite statement as PostgreSQL: the text, its parameter style, and what the connection must do."""

    __slots__ = ("sql", "named", "kind", "table", "or_action", "ddl", "pragma", "pragma_arg")

    def __init__(self, sql: str, *, named: bool = False, kind: str = "", table: str = "", or_action: str = "",
                 ddl: bool = False, pragma: str = "", pragma_arg: str = "") -> None:
        self.sql, self.named, self.kind, self.table = sql, named, kind, table
        self.or_action, self.ddl, self.pragma, self.pragma_arg = or_action, ddl, pragma, pragma_arg


_COND_PARENTS = (exp.Where, exp.Having, exp.And, exp.Or, exp.Not, exp.If, exp.Filter)


def _bare_condition(node: exp.Expression) -> bool:
    """A column or integer-valued expression used where PostgreSQL wants a boolean (SQLite: non-zero)."""
    return isinstance(node, (exp.Column, exp.Coalesce, exp.Max, exp.Min, exp.Count, exp.Sum, exp.Length))


def _boolify(node: exp.Expression) -> exp.Expression:
    return exp.NEQ(this=node.copy(), expression=exp.Literal.number(0))


def _is_param(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.Var) and node.name.startswith(_P)


def _is_truth(node: exp.Expression | None) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, (exp.Predicate, exp.Connector, exp.Not)) and not isinstance(node, exp.Placeholder)


def _transform(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.DataType):
        t = node.this
        if isinstance(node.parent, exp.Cast) and _is_truth(node.parent.this):
            return node  # a truth as 0/1: boolean casts to INT only
        if t in (exp.DataType.Type.INT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT,
                 exp.DataType.Type.BOOLEAN):
            return exp.DataType.build("BIGINT", dialect="postgres")
        if t in (exp.DataType.Type.FLOAT,):
            return exp.DataType.build("DOUBLE PRECISION", dialect="postgres")
        return node
    if isinstance(node, exp.Like):
        return exp.ILike(this=node.this, expression=node.expression)
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        if name == "total":
            return exp.Coalesce(this=exp.Sum(this=node.expressions[0]),
                                expressions=[exp.Literal.number("0.0")])
        if name == "char":
            return exp.Anonymous(this="chr", expressions=[e.copy() for e in node.expressions])
        if name == "json_array":
            return exp.Anonymous(this="json_build_array", expressions=[e.copy() for e in node.expressions])
    if isinstance(node, exp.Column) and node.name.lower() in ("rowid", "_rowid_", "oid"):
        # SQLite's row id of a table without an INTEGER PRIMARY KEY: the row's place (ctid) on PostgreSQL
        # (insertion order while the row is not updated)
        return exp.Column(this=exp.to_identifier("ctid"), table=node.args.get("table"))
    if isinstance(node, exp.Table) and node.args.get("db") is not None and node.db.lower() == "temp":
        node.set("db", exp.to_identifier("pg_temp"))  # SQLite's temp schema
        return node
    if isinstance(node, exp.JSONArray):
        return exp.Anonymous(this="json_build_array", expressions=[e.copy() for e in node.expressions])
    if isinstance(node, exp.In):
        query = node.args.get("query")
        if not node.expressions and query is None and node.args.get("unnest") is None and node.args.get("field") is None:
            return exp.false()  # `x IN ()`: SQLite allows the empty list (nothing is in it)
        inner = query.this if isinstance(query, exp.Subquery) else query
        if isinstance(inner, exp.Select) and any(
                isinstance(t.this, exp.Anonymous) and str(t.this.this).lower() == "json_each"
                for t in inner.find_all(exp.Table)) and not (
                len(inner.expressions) == 1 and isinstance(inner.expressions[0], exp.Cast)):
            # json_each's values are text here (SQLite's keep their JSON type): compare as text, unless the
            # statement casts them itself (`SELECT CAST(value AS INTEGER) FROM json_each(?)`)
            node.set("this", exp.Cast(this=node.this.copy(), to=exp.DataType.build("TEXT")))
        return node
    if isinstance(node, exp.Subquery) and not node.alias and isinstance(node.parent, (exp.From, exp.Join)):
        node.set("alias", exp.TableAlias(this=exp.to_identifier(f"_sq{abs(hash(node.sql())) % 100000}")))
        return node
    # `? IS NULL`: PostgreSQL must know a parameter's type; any value is a text literal
    if isinstance(node, exp.Is) and _is_param(node.this):
        node.set("this", exp.Cast(this=node.this.copy(), to=exp.DataType.build("TEXT")))
        return node
    # (a IS NULL) = 0: a comparison's truth compared with a number is 0/1 on SQLite
    if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
        sides = [node.this, node.expression]
        truth = [_is_truth(x) for x in sides]
        if truth[0] != truth[1]:
            for slot, side, is_truth in zip(("this", "expression"), sides, truth, strict=True):
                if is_truth:
                    node.set(slot, exp.Cast(this=side.copy(), to=exp.DataType.build("INT")))
        return node
    # SUM(a > 0), SUM(CASE ...): a predicate summed is an integer on SQLite
    if isinstance(node, (exp.Sum, exp.Avg, exp.Max, exp.Min)) and isinstance(node.this, (exp.Predicate, exp.Connector, exp.Not)):
        return node.__class__(this=exp.Cast(this=node.this, to=exp.DataType.build("INT")))
    return node


def _conditions(tree: exp.Expression) -> None:
    """Bare integer columns in conditions become `col <> 0` (PostgreSQL wants booleans there)."""
    for node in list(tree.find_all(*_COND_PARENTS)):
        if isinstance(node, (exp.Where, exp.Having)):
            slots = ["this"]
        elif isinstance(node, (exp.And, exp.Or)):
            slots = ["this", "expression"]
        elif isinstance(node, (exp.Not, exp.If)):
            slots = ["this"]
        elif isinstance(node, exp.Filter):
            slots = []
        else:
            slots = []
        for slot in slots:
            child = node.args.get(slot)
            while isinstance(child, exp.Paren):
                child = child.this
            if child is not None and _bare_condition(child):
                node.set(slot, _boolify(child))
    for case in tree.find_all(exp.Case):
        for ifs in case.args.get("ifs") or []:
            cond = ifs.this
            if _bare_condition(cond):
                ifs.set("this", _boolify(cond))


def _bare_group_columns(tree: exp.Expression) -> None:
    """SQLite lets a grouped query select a column it neither groups by nor aggregates (a value of some row
    of the group); PostgreSQL refuses it: such a column is selected as MIN(column) under its own name."""
    for select in list(tree.find_all(exp.Select)):
        group = select.args.get("group")
        if group is None or any(isinstance(g, exp.Literal) for g in group.expressions):
            continue
        grouped_sql = {g.sql() for g in group.expressions}
        grouped_names = {c.name for g in group.expressions for c in g.find_all(exp.Column)}
        aliases = {e.alias for e in select.expressions if isinstance(e, exp.Alias)}
        for i, e in enumerate(select.expressions):
            target = e.this if isinstance(e, exp.Alias) else e
            if not isinstance(target, exp.Column) or isinstance(target.this, exp.Star):
                continue
            if (target.sql() in grouped_sql or target.name in grouped_names or e.alias in grouped_names
                    or target.name in aliases - {e.alias}):
                continue
            wrapped = exp.Min(this=target.copy())
            select.expressions[i].replace(exp.alias_(wrapped, e.alias or target.name))


def _identity_keys(tree: exp.Create) -> None:
    """`x INTEGER PRIMARY KEY` (SQLite's row id: numbered when not given) as BIGSERIAL."""
    schema = tree.this
    if not isinstance(schema, exp.Schema):
        return
    for col in schema.expressions:
        if not isinstance(col, exp.ColumnDef):
            continue
        kind = col.args.get("kind")
        cons = col.args.get("constraints") or []
        is_pk = any(isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for c in cons)
        if is_pk and kind is not None and kind.this in (exp.DataType.Type.INT, exp.DataType.Type.BIGINT):
            col.set("kind", exp.DataType.build("BIGSERIAL", dialect="postgres"))
            col.set("constraints", [c for c in cons if not isinstance(c.kind, exp.AutoIncrementColumnConstraint)])


def _qualify_upsert(conflict: exp.Expression, insert: exp.Insert) -> None:
    """In `ON CONFLICT ... DO UPDATE SET c = <expr> WHERE <cond>` SQLite reads a bare column as the stored
    row's; PostgreSQL calls it ambiguous: qualify it with the target table (or its alias)."""
    target = insert.this.this if isinstance(insert.this, exp.Schema) else insert.this
    name = target.alias_or_name if isinstance(target, exp.Table) else ""
    if not name:
        return
    for key in ("conflict_keys",):
        for col in conflict.args.get(key) or []:
            if isinstance(col, exp.Ordered):
                col.replace(col.this.copy())
    parts: list[exp.Expression] = []
    for eq in conflict.args.get("expressions") or []:
        if isinstance(eq, exp.EQ) and eq.expression is not None:
            parts.append(eq.expression)
    if conflict.args.get("where") is not None:
        parts.append(conflict.args["where"])
    for part in parts:
        for col in list(part.find_all(exp.Column)):
            if not col.table and col.find_ancestor(exp.Select, exp.Subquery) is None:  # a subquery's are its own
                col.set("table", exp.to_identifier(name))


_REFERENCES = re.compile(r"REFERENCES\s+[\w\"]+\s*(\([^)]*\))?(\s+ON\s+(DELETE|UPDATE)\s+(CASCADE|SET NULL|SET DEFAULT"
                         r"|RESTRICT|NO ACTION))*", re.I)
_K = "zzqk"  # prefix of a `:name` while parsed (`:like` would be read as the keyword)
_QUOTED_OR_NAME = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<![:\w]):([A-Za-z_]\w*)")


def _safe_names(sql: str) -> str:
    """`:name` placeholders (outside quotes) renamed so that no name reads as a keyword."""
    return _QUOTED_OR_NAME.sub(lambda m: f":{_K}{m.group(1)}" if m.group(1) else m.group(0), sql)


@functools.lru_cache(maxsize=8192)
def translate(sql: str) -> Translated:
    """The PostgreSQL form of one SQLite statement (cached per SQL string)."""
    stripped = sql.strip().rstrip(";").strip()
    m = _PRAGMA.match(stripped)
    if m:
        return Translated("", kind="pragma", pragma=m.group(1).lower(), pragma_arg=(m.group(2) or m.group(3) or ""))
    head = stripped.split(None, 2)
    word = head[0].upper() if head else ""
    if word in ("SAVEPOINT", "RELEASE") or (word == "ROLLBACK" and re.match(r"ROLLBACK\s+(TRANSACTION\s+)?TO\b",
                                                                             stripped, re.I)):
        return Translated(stripped, kind="tx:SAVEPOINT")
    if word in ("BEGIN", "COMMIT", "END", "ROLLBACK"):
        return Translated(stripped, kind="tx:" + (" ".join(head[:2]).upper()))
    or_action = ""
    m = _OR_ACTION.match(stripped)
    if m:
        or_action = "IGNORE" if (m.group(2) or "").upper() == "IGNORE" else "REPLACE"
        stripped = "INSERT INTO " + stripped[m.end():]
    stripped = re.sub(r"\)\s*WITHOUT\s+ROWID\s*$", ")", stripped, flags=re.I)
    stripped = re.sub(r"\bAUTOINCREMENT\b", "", stripped, flags=re.I)
    stripped = re.sub(r"\s+(INDEXED\s+BY\s+\w+|NOT\s+INDEXED)\b", "", stripped, flags=re.I)  # SQLite's planner hints
    stripped = re.sub(r"\bsqlite_master\b|\bsqlite_schema\b", "sqlite_master", stripped)
    try:
        tree = sqlglot.parse_one(_safe_names(stripped), read="sqlite")
    except sqlglot.errors.ParseError:
        return _fallback(stripped, or_action)
    named = False
    n = 0
    for ph in list(tree.find_all(exp.Placeholder)):
        if ph.this:
            named = True
            ph.replace(exp.var(f"{_P}n{str(ph.this).removeprefix(_K)}"))
        else:
            ph.replace(exp.var(f"{_P}{n}"))
            n += 1
    for param in list(tree.find_all(exp.Parameter)):  # `:name` parsed as a parameter by some versions
        named = True
        param.replace(exp.var(f"{_P}n{param.name.removeprefix(_K)}"))
    ddl = isinstance(tree, (exp.Create, exp.Drop, exp.Alter))
    if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE":
        _identity_keys(tree)
    if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Index):
        params = tree.this.args.get("params")
        for col in (params.args.get("columns") or []) if params is not None else []:
            inner = col.this if isinstance(col, exp.Ordered) else col
            if isinstance(col, exp.Ordered):
                col.set("nulls_first", None)  # an index's order is not a query's
            if not isinstance(inner, (exp.Column, exp.Paren)):
                inner.replace(exp.Paren(this=inner.copy()))
    tree = tree.transform(_transform)
    _conditions(tree)
    _bare_group_columns(tree)
    kind = tree.key  # select, insert, update, delete, create, ...
    table = ""
    if isinstance(tree, exp.Insert):
        target = tree.this
        if isinstance(target, exp.Schema):
            target = target.this
        table = target.name if isinstance(target, exp.Table) else ""
    conflict = tree.args.get("conflict") if isinstance(tree, exp.Insert) else None
    if conflict is not None and table:
        _qualify_upsert(conflict, tree)
    out = tree.sql(dialect="postgres")
    out = re.sub(r"(ON CONFLICT\s*\([^)]*?)\s+NULLS FIRST", r"\1", out)
    while re.search(r"ON CONFLICT\s*\([^)]*NULLS FIRST", out):
        out = re.sub(r"(ON CONFLICT\s*\([^)]*?)\s+NULLS FIRST", r"\1", out)
    if ddl:  # foreign keys deferrable, as SQLite's `PRAGMA defer_foreign_keys` makes them (SET CONSTRAINTS)
        out = _REFERENCES.sub(lambda m: m.group(0) + " DEFERRABLE INITIALLY IMMEDIATE", out)
    out = out.replace("%", "%%")
    out = re.sub(rf"\b{_P}n(\w+)\b", r"%(\1)s", out)
    out = re.sub(rf"\b{_P}\d+\b", "%s", out)
    if or_action == "IGNORE":
        out += " ON CONFLICT DO NOTHING"
    return Translated(out, named=named, kind=kind, table=table, or_action=or_action, ddl=ddl)


def _fallback(sql: str, or_action: str) -> Translated:
    """A statement sqlglot cannot parse: sent as it is, with `?` / `:name` as psycopg placeholders."""
    out = sql.replace("%", "%%")
    named = bool(re.search(r"(?<![:\w]):[A-Za-z_]\w*", out))
    out = re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", out) if named else out.replace("?", "%s")
    if or_action == "IGNORE":
        out += " ON CONFLICT DO NOTHING"
    word = sql.split(None, 1)[0].lower() if sql.split() else ""
    return Translated(out, named=named, kind=word, or_action=or_action, ddl=word in ("create", "drop", "alter"))


# -- the schema's catalog: auto-numbered keys and primary keys (for lastrowid and INSERT OR REPLACE) ---------

_catalog: dict[str, tuple[dict[str, str], dict[str, list[str]]]] = {}
_catalog_lock = threading.Lock()

_CATALOG_SQL = """
SELECT c.relname, a.attname, (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%') AS serial,
       a.attnum = ANY(i.indkey) AS pk
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relkind = 'r' AND (n.oid = pg_my_temp_schema() OR n.nspname = current_schema())
ORDER BY c.relname, array_position(i.indkey::int2[], a.attnum)
"""


# -- the PostgreSQL-only part of the schema ------------------------------------------------------------------

COMPAT_KEY = "cloud_sync.pg"
COMPAT = [
    r"""
    CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    CREATE FUNCTION fold(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT lower($1) $$;
    CREATE FUNCTION datetime(text) RETURNS text LANGUAGE sql STABLE AS $$
        SELECT CASE WHEN $1 = 'now' THEN to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                    ELSE to_char($1::timestamp, 'YYYY-MM-DD HH24:MI:SS') END $$;
    CREATE FUNCTION sqlite_ts(text, VARIADIC text[]) RETURNS timestamp LANGUAGE plpgsql STABLE AS $$
    DECLARE
        ts timestamp;
        m text;
        unix boolean := false;
    BEGIN
        IF $1 IS NULL THEN RETURN NULL; END IF;
        FOREACH m IN ARRAY $2 LOOP
            IF m = 'unixepoch' THEN unix := true; END IF;
        END LOOP;
        IF unix THEN ts := to_timestamp($1::double precision) AT TIME ZONE 'UTC';
        ELSIF $1 = 'now' THEN ts := now() AT TIME ZONE 'UTC';
        ELSE ts := $1::timestamp;
        END IF;
        FOREACH m IN ARRAY $2 LOOP
            IF m IS NULL THEN RETURN NULL; END IF;
            IF m NOT IN ('unixepoch', 'utc', 'localtime') THEN ts := ts + m::interval; END IF;
        END LOOP;
        RETURN ts;
    END $$;
    CREATE FUNCTION datetime(text, VARIADIC text[]) RETURNS text LANGUAGE sql STABLE AS $$
        SELECT to_char(sqlite_ts($1, VARIADIC $2), 'YYYY-MM-DD HH24:MI:SS') $$;
    CREATE FUNCTION date(text, VARIADIC text[]) RETURNS text LANGUAGE sql STABLE AS $$
        SELECT to_char(sqlite_ts($1, VARIADIC $2), 'YYYY-MM-DD') $$;
    CREATE FUNCTION datetime(double precision, text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
        SELECT to_char(to_timestamp($1) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') $$;
    CREATE FUNCTION date(text) RETURNS text LANGUAGE sql STABLE AS $$
        SELECT CASE WHEN $1 = 'now' THEN to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                    ELSE to_char($1::timestamp, 'YYYY-MM-DD') END $$;
    CREATE FUNCTION date(double precision, text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
        SELECT to_char(to_timestamp($1) AT TIME ZONE 'UTC', 'YYYY-MM-DD') $$;
    CREATE FUNCTION julianday(text) RETURNS double precision LANGUAGE sql STABLE AS $$
        SELECT extract(epoch FROM (CASE WHEN $1 = 'now' THEN now() AT TIME ZONE 'UTC' ELSE $1::timestamp END))
               / 86400.0 + 2440587.5 $$;
    CREATE FUNCTION unixepoch(text) RETURNS bigint LANGUAGE sql STABLE AS $$
        SELECT floor(extract(epoch FROM (CASE WHEN $1 = 'now' THEN now() AT TIME ZONE 'UTC'
                                              ELSE $1::timestamp END)))::bigint $$;
    CREATE FUNCTION strftime(text, text) RETURNS text LANGUAGE sql STABLE AS $$
        SELECT CASE WHEN $1 = '%s' THEN unixepoch($2)::text
                    ELSE to_char((CASE WHEN $2 = 'now' THEN now() AT TIME ZONE 'UTC' ELSE $2::timestamp END),
                                 replace(replace(replace(replace(replace(replace($1, '%Y', 'YYYY'), '%m', 'MM'),
                                   '%d', 'DD'), '%H', 'HH24'), '%M', 'MI'), '%S', 'SS')) END $$;
    CREATE FUNCTION strftime(text, double precision, text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
        SELECT to_char(to_timestamp($2) AT TIME ZONE 'UTC',
                       replace(replace(replace(replace(replace(replace($1, '%Y', 'YYYY'), '%m', 'MM'),
                         '%d', 'DD'), '%H', 'HH24'), '%M', 'MI'), '%S', 'SS')) $$;
    CREATE FUNCTION json_each(text) RETURNS TABLE(key bigint, value text) LANGUAGE sql IMMUTABLE AS $$
        SELECT t.n - 1, t.v FROM json_array_elements_text($1::json) WITH ORDINALITY AS t(v, n) $$;
    CREATE FUNCTION printf(text, VARIADIC "any") RETURNS text LANGUAGE internal STABLE AS 'text_format';
    CREATE FUNCTION printf(text, bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN $1 = '%+d' THEN (CASE WHEN $2 >= 0 THEN '+' ELSE '' END) || $2::text
                    ELSE format(replace($1, '%d', '%s'), $2) END $$;
    CREATE VIEW sqlite_master AS
        SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'i' THEN 'index' ELSE 'table' END AS type,
               c.relname::text AS name, coalesce(t.relname, c.relname)::text AS tbl_name, NULL::text AS sql
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_index x ON x.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = x.indrelid
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'i');
    """,
    # an index made by CREATE INDEX shows its definition in `sql`, one that backs a key or a UNIQUE constraint
    # does not (SQLite's sqlite_autoindex_*: sql NULL), so "the indexes a table carries" reads alike
    r"""
    CREATE OR REPLACE VIEW sqlite_master AS
        SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'i' THEN 'index' ELSE 'table' END AS type,
               c.relname::text AS name, coalesce(t.relname, c.relname)::text AS tbl_name,
               CASE WHEN c.relkind = 'i' AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)
                    THEN pg_get_indexdef(c.oid) END::text AS sql
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_index x ON x.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = x.indrelid
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'i');
    """,
]


# -- the connection -------------------------------------------------------------------------------------------


class Native(str):
    """A PostgreSQL script to run as it is (not translated, not split): `COMPAT`, `MIGRATIONS_PG` entries.
    `sqlite` is the SQLite script it completes: its statements other than CREATE TRIGGER run (translated)
    first, then this script in their place."""

    sqlite: str = ""

    @classmethod
    def completing(cls, sqlite_script: str, native: str) -> Native:
        out = cls(native)
        out.sqlite = sqlite_script
        return out


def is_trigger(statement: str) -> bool:
    return bool(re.match(r"\s*CREATE\s+(TEMP\w*\s+)?TRIGGER\b", statement, re.I))


class Cursor:
    """What `execute` returns: rows (iterable, fetchone/fetchall/fetchmany), rowcount, lastrowid, description."""

    def __init__(self, rows: list[Any] | None = None, *, rowcount: int = -1, lastrowid: int | None = None,
                 description: Any = None) -> None:
        self._rows = rows or []
        self._pos = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.description = description
        self.arraysize = 1

    def fetchone(self) -> Any:
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchall(self) -> list[Any]:
        rows = self._rows[self._pos:]
        self._pos = len(self._rows)
        return rows

    def fetchmany(self, size: int | None = None) -> list[Any]:
        n = size or self.arraysize
        rows = self._rows[self._pos:self._pos + n]
        self._pos += len(rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._pos < len(self._rows):
            row = self._rows[self._pos]
            self._pos += 1
            yield row

    def close(self) -> None:
        self._rows = []


class Connection:
    """A PostgreSQL connection with the `sqlite3.Connection` surface the cloud uses (see the module doc)."""

    def __init__(self, raw: psycopg.Connection, *, schema: str, label: str,
                 pool: ConnectionPool | None = None) -> None:
        self._raw: Any = raw
        self.pooled = pool is not None
        # close(), or garbage collection of a wrapper never closed: the connection back to its pool (or closed,
        # when it has none)
        self._release = weakref.finalize(self, _collected, pool, raw)
        self.schema = schema
        self.label = label  # the URL without its password, for messages
        self.db_key = ""  # sitelink.sqlite's waiting-writer count is SQLite's; PostgreSQL has no busy wait
        self.row_factory: Any = Row
        self.lock_key = writer_lock_key(schema)
        self._tag = statement_tag(schema)
        self.lock_keys: frozenset[str] | None = None  # a keyed transaction's keys (`begin_keyed`), else None
        self._deferred: list[tuple[str, Any]] = []  # `defer`: written at COMMIT
        self._flushers: dict[str, tuple[int, Callable[[Connection, list[Any]], None]]] = {}  # name -> rank, flush
        self._marks: list[tuple[str, int]] = []  # savepoints: how much was deferred when each was set
        self._sp = 0
        self._lock = threading.RLock()
        self._trace: Callable[[str], object] | None = None
        self._changes = 0
        self._began = False  # a transaction opened by BEGIN and not ended yet, as this wrapper knows it
        self.reopen: Callable[[], Connection] | None = None  # `connect` again, for a connection the server dropped

    engine = "postgresql"

    # -- sqlite3.Connection surface --

    @property
    def in_transaction(self) -> bool:
        if self._dropped():  # the server ended it: a transaction only as far as the caller has not ended it
            return self._began
        return self._raw.info.transaction_status != pq.TransactionStatus.IDLE

    def _dropped(self) -> bool:
        """The server dropped this connection (it restarted, or ended the session)."""
        raw = self._raw
        return raw is not _CLOSED and bool(raw.closed or raw.broken)

    def _revive(self) -> None:
        """A new connection in place of a dropped one (from the pool when there is one); `connect`'s error
        when the server cannot be reached yet."""
        assert self.reopen is not None
        for _ in range(POOL_MAX):  # a pool's idle connections died with the server too: one that answers
            fresh = self.reopen()
            try:
                fresh._raw.execute("SELECT 1")
                break
            except psycopg.Error:
                fresh.close()
        else:
            fresh = self.reopen()
        moved = fresh._release.detach()
        fresh._raw = _CLOSED
        old = self._release.detach()
        if old is not None:
            _give_back(*old[2])  # a pool discards a broken connection
        assert moved is not None
        pool, raw = moved[2]
        self._raw, self.pooled = raw, pool is not None
        self._release = weakref.finalize(self, _collected, pool, raw)
        self._began = False
        self._ended()

    def _lost(self, verb: str) -> Cursor | None:
        """Before a statement, on a connection the server dropped (it restarted): a service's threads keep one
        connection for their whole life and go on after a restart of PostgreSQL. Outside a transaction a new
        connection takes its place and the statement runs there (nothing of it was sent); inside one, what
        it did is gone with it: ROLLBACK ends it here, any other statement is refused (never run on its own
        in autocommit, away from the rest of its transaction)."""
        if self._began:
            if verb.startswith("ROLLBACK"):
                self._began = False
                self._ended()
                return Cursor(rowcount=-1)
            raise OperationalError("the connection to the database was lost inside a transaction: "
                                   "nothing of it was committed")
        self._revive()
        return None

    @property
    def total_changes(self) -> int:
        """As sqlite3's: rows inserted, updated or deleted through this connection since it opened."""
        return self._changes

    def cursor(self) -> Connection:
        return self

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor:
        if self._trace is not None:
            self._trace(sql)
        with self._lock:
            if self.reopen is not None and self._dropped():
                ended = self._lost(translate(sql).kind.removeprefix("tx:"))
                if ended is not None:
                    return ended
            began = self._began
            try:
                return self._execute(sql, params)
            except Error:
                kind = translate(sql).kind
                # found dropped by this statement outside a transaction: a read or a BEGIN did nothing, and runs
                # again on a new connection; a write is not repeated (it may have been done): the caller says
                if began or self.reopen is None or not self._dropped() or not (
                        kind == "select" or kind.startswith("tx:BEGIN")):
                    raise
                self._revive()
                return self._execute(sql, params)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Cursor:
        t = translate(sql)
        seq = list(seq)
        if self._trace is not None:
            for _ in seq:
                self._trace(sql)
        if t.kind.startswith("tx:") or t.kind == "pragma" or not seq:
            return Cursor(rowcount=0)
        with self._lock:
            text = self._final_sql(t)
            try:
                with self._savepoint(), self._raw.cursor() as cur:
                    cur.executemany(text, [self._params(t, p) for p in seq])
                    if t.kind in ("insert", "update", "delete") and cur.rowcount > 0:
                        self._changes += cur.rowcount
                    return Cursor(rowcount=cur.rowcount)
            except psycopg.Error as exc:
                raise _mapped(exc, sql) from exc

    def executescript(self, script: str) -> Cursor:
        for statement in statements(script):
            self.execute(statement)
        return Cursor()

    def commit(self) -> None:
        with self._lock:
            if self.in_transaction:
                try:
                    self.flush_deferred()
                    self._raw.commit()
                except psycopg.Error as exc:
                    raise _mapped(exc, "COMMIT") from exc
            self._began = False
            self._ended()

    def rollback(self) -> None:
        with self._lock:
            began, self._began = self._began, False
            self._ended()
            if self._dropped():
                return  # the server ended the transaction with the connection
            if began or self.in_transaction:
                self._raw.rollback()

    def close(self) -> None:
        """As sqlite3's: the end of this connection (a pooled one goes back to its pool, see the module
        doc); anything not committed is rolled back; closing twice is nothing."""
        with self._lock:
            if not self._release.alive:
                return
            self._trace = None
            self._raw = _CLOSED
            detached = self._release.detach()
            if detached is not None:
                _give_back(*detached[2])

    @property
    def closed(self) -> bool:
        return not self._release.alive

    def interrupt(self) -> None:
        if self._release.alive:
            self._raw.cancel_safe()

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        """SQLite's Python functions exist as SQL functions on PostgreSQL (`COMPAT`): nothing to do."""

    def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """As sqlite3's: `callback` gets every statement run, as the caller wrote it (SQLite's dialect)."""
        self._trace = callback

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    # -- engine-specific --

    def execute_native(self, script: str) -> None:
        """Run PostgreSQL's own SQL as it is (several statements allowed, no parameters)."""
        with self._lock:
            try:
                with self._savepoint():
                    self._raw.execute(script.encode())
            except psycopg.Error as exc:
                raise _mapped(exc, script) from exc
            self._forget_catalog(self.schema)

    def lock_immediate(self) -> None:
        """Inside a transaction: take this database's writer lock (the BEGIN IMMEDIATE of SQLite)."""
        self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))

    def begin_keyed(self, keys: Iterable[str]) -> None:
        """BEGIN of a keyed transaction (`sitelink.sqlite.transaction(conn, keys=...)`): the store's writer lock
        shared, then each key's lock exclusive, in the order of their numbers (two keyed transactions never
        wait for each other in a circle)."""
        names = frozenset(keys)
        numbers = sorted({key_lock(self.schema, k) for k in names})
        self.execute("BEGIN")
        if _LOCK_STATS is not None:
            _LOCK_STATS.begin(self)
        with self._lock:
            try:
                self._raw.execute("SELECT pg_advisory_xact_lock_shared(%s)", (self.lock_key,))
                if numbers:
                    self._raw.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (numbers,))
            except psycopg.Error as exc:
                self.rollback()
                raise _mapped(exc, "BEGIN (keyed)") from exc
        self.lock_keys = names
        if _LOCK_STATS is not None:
            _LOCK_STATS.locked(self, keyed=True)

    def defer(self, name: str, item: Any, flush: Callable[[Connection, list[Any]], None], *, rank: int = 0) -> None:
        """Keep `item` to be written at COMMIT by `flush(conn, items of name)` (by `rank`, then in the order of
        the names' first use), inside the transaction, after everything else: a keyed transaction leaves its
        writes to rows other keyed transactions share (a stock level, an item's dirty mark) to its last moment,
        in a fixed order (every transaction locks such rows in the same order: the levels, then the dirty
        marks, each in key order, so two of them never wait for each other in a circle). A savepoint rolled
        back drops what was deferred after it."""
        self._flushers.setdefault(name, (rank, flush))
        self._deferred.append((name, item))

    def flush_deferred(self) -> None:
        """Write what was deferred (`defer`); done by COMMIT, or before it by `sitelink.sqlite.transaction`.
        One name at a time, the lowest rank first (first used first among equals); what a flush defers in turn
        (a level's dirty mark) joins the names still to write."""
        self._marks = []
        while self._flushers:
            flushers = self._flushers
            name = min(flushers, key=lambda n: flushers[n][0])
            _, flush = flushers.pop(name)
            items = [item for n, item in self._deferred if n == name]
            self._deferred = [(n, item) for n, item in self._deferred if n != name]
            if items:
                flush(self, items)
        self._deferred = []

    def _ended(self) -> None:
        self.lock_keys = None
        self._deferred, self._flushers, self._marks = [], {}, []
        if _LOCK_STATS is not None:
            _LOCK_STATS.end(self)

    def _savepoint_mark(self, sql: str) -> None:
        words = sql.replace(";", " ").split()
        name = words[-1].lower() if words else ""
        verb = words[0].upper() if words else ""
        if verb == "SAVEPOINT":
            self._marks.append((name, len(self._deferred)))
            return
        for i in range(len(self._marks) - 1, -1, -1):
            if self._marks[i][0] == name:
                if verb == "ROLLBACK":  # ROLLBACK TO keeps the savepoint (as SQLite's)
                    del self._deferred[self._marks[i][1]:]
                    del self._marks[i + 1:]
                else:  # RELEASE
                    del self._marks[i:]
                return

    def take_key(self, key: str) -> None:
        """Inside a keyed transaction, at its end (a `defer` flush): one more key's lock, exclusive, to its
        COMMIT — for rows whose ids must commit in the order they were given (an order's history, read by id):
        taken last, after every other lock of the transaction, so it never waits in a circle."""
        with self._lock:
            try:
                self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (key_lock(self.schema, key),))
            except psycopg.Error as exc:
                raise _mapped(exc, "key lock") from exc

    def try_lock_immediate(self) -> bool:
        row = self._raw.execute("SELECT pg_try_advisory_xact_lock(%s)", (self.lock_key,)).fetchone()
        return bool(row and row[0])

    def set_lock_wait(self, ms: int | None) -> None:
        """How long this connection waits for any lock (the writer lock, a key's, a row's) before the statement
        fails as "database is locked" (`lock_timeout` of the session, as SQLite's busy_timeout bounds its one
        writer's wait); None: the server's own again. The caller bounds one piece of work and gives it back in
        `finally` (a connection given back to the pool is reset to None as well: `_reset`)."""
        with self._lock:
            try:
                if ms is None:
                    self._raw.execute("RESET lock_timeout")
                else:
                    self._raw.execute("SELECT set_config('lock_timeout', %s, false)", (f"{max(1, int(ms))}ms",))
            except psycopg.Error as exc:
                raise _mapped(exc, "SET lock_timeout") from exc

    # -- internals --

    def _params(self, t: Translated, params: Any) -> Any:
        if params is None:
            return {} if t.named else ()
        if t.named:
            if isinstance(params, Mapping):
                return params
            raise ProgrammingError("named placeholders need a mapping of parameters")
        if isinstance(params, Mapping):
            raise ProgrammingError("positional placeholders need a sequence of parameters")
        return tuple(params)

    def _final_sql(self, t: Translated) -> str:
        text = t.sql
        if t.or_action == "REPLACE":
            _, pks = self._catalog(t.table)
            cols = self._insert_columns(t)
            keys = pks.get(t.table.lower(), [])
            if keys:
                rest = [c for c in cols if c.lower() not in {k.lower() for k in keys}]
                action = ("DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)) if rest else "DO NOTHING"
                text += f" ON CONFLICT ({', '.join(keys)}) {action}"
        return self._tag + text

    @staticmethod
    def _insert_columns(t: Translated) -> list[str]:
        m = re.match(r"INSERT INTO\s+\S+?\s*\(([^)]*)\)", t.sql, re.I)
        return [c.strip().strip('"') for c in m.group(1).split(",")] if m else []

    def _catalog(self, table: str) -> tuple[dict[str, str], dict[str, list[str]]]:
        key = self.schema
        entry = _catalog.get(key)
        if entry is None or (table and table.lower() not in entry[1] and table.lower() not in entry[0]):
            serial: dict[str, str] = {}
            pks: dict[str, list[str]] = {}
            known: set[str] = set()
            for rel, att, is_serial, is_pk in self._raw.execute(_CATALOG_SQL).fetchall():
                known.add(rel)
                if is_serial:
                    serial.setdefault(rel, att)
                if is_pk:
                    pks.setdefault(rel, []).append(att)
            for rel in known:
                pks.setdefault(rel, [])
            entry = (serial, pks)
            with _catalog_lock:
                _catalog[key] = entry
        return entry

    @staticmethod
    def _forget_catalog(schema: str) -> None:
        with _catalog_lock:
            _catalog.pop(schema, None)

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """Inside a transaction a failing statement must not abort it (SQLite's way): a savepoint around it."""
        if not self.in_transaction:
            yield
            return
        self._raw.execute("SAVEPOINT ms_stmt")
        try:
            yield
        except BaseException:
            if self._raw.info.transaction_status == pq.TransactionStatus.INERROR:
                self._raw.execute("ROLLBACK TO SAVEPOINT ms_stmt")
            raise
        else:
            self._raw.execute("RELEASE SAVEPOINT ms_stmt")

    def _pragma(self, t: Translated) -> Cursor:
        name, arg = t.pragma, t.pragma_arg.strip().strip("'\"")
        if name == "table_info" and arg:
            rows = self._raw.execute(
                "SELECT a.attnum - 1, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull::int,"
                " pg_get_expr(d.adbin, d.adrelid), 0 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d"
                " ON d.adrelid = c.oid AND d.adnum = a.attnum WHERE c.relname = %s AND n.nspname = current_schema()"
                " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (arg,)).fetchall()
            cls = _row_class(["cid", "name", "type", "notnull", "dflt_value", "pk"])
            return Cursor([cls(r) for r in rows], rowcount=-1)
        if name == "defer_foreign_keys" and self.in_transaction:
            self._raw.execute("SET CONSTRAINTS ALL DEFERRED")
        cls = _row_class([name])
        return Cursor([cls((0,))], rowcount=-1)  # settings of SQLite's file: nothing to set here

    def _execute(self, sql: str, params: Any) -> Cursor:
        t = translate(sql)
        if t.kind == "pragma":
            return self._pragma(t)
        if t.kind.startswith("tx:"):
            return self._tx(t.kind[3:], sql)
        text = self._final_sql(t)
        returning_id = ""
        if t.kind == "insert" and t.table and " RETURNING " not in text.upper():
            serial, _ = self._catalog(t.table)
            returning_id = serial.get(t.table.lower(), "")
            if returning_id:
                text += f" RETURNING {returning_id}"
        args = self._params(t, params)
        # a failing SELECT is a bug either way; a write may fail by design (a duplicate) and the caller goes on
        # with its transaction: inside one, the write runs between SAVEPOINT and RELEASE, the three sent at once
        # (pipeline mode: one round trip, not three)
        in_tx = t.kind != "select" and self.in_transaction
        try:
            with self._raw.cursor() as cur:
                if in_tx:
                    try:
                        with self._raw.pipeline():
                            self._raw.execute("SAVEPOINT ms_stmt")
                            cur.execute(text, args, prepare=None)
                            self._raw.execute("RELEASE SAVEPOINT ms_stmt")
                    except psycopg.Error:
                        if self._raw.info.transaction_status == pq.TransactionStatus.INERROR:
                            self._raw.execute("ROLLBACK TO SAVEPOINT ms_stmt")
                            self._raw.execute("RELEASE SAVEPOINT ms_stmt")
                        raise
                else:
                    cur.execute(text, args, prepare=None)
                rowcount = cur.rowcount
                if t.kind in ("insert", "update", "delete") and rowcount > 0:
                    self._changes += rowcount
                if cur.description is None:
                    if t.ddl:
                        self._forget_catalog(self.schema)
                    return Cursor(rowcount=rowcount)
                rows = cur.fetchall()
                if returning_id:
                    last = rows[-1][0] if rows else None
                    return Cursor(rowcount=rowcount, lastrowid=last)
                names = [d.name for d in cur.description]
                cls = _row_class(names)
                description = tuple((n, None, None, None, None, None, None) for n in names)
                return Cursor([cls(r) for r in rows], rowcount=rowcount, description=description)
        except psycopg.Error as exc:
            raise _mapped(exc, sql) from exc

    def _tx(self, verb: str, sql: str) -> Cursor:
        try:
            if verb.startswith("BEGIN"):
                if self.in_transaction:
                    raise OperationalError("cannot start a transaction within a transaction")
                self._raw.execute("BEGIN")
                self._began = True
                self.lock_keys = None
                if verb in ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"):
                    if _LOCK_STATS is not None:
                        _LOCK_STATS.begin(self)
                    try:
                        self.lock_immediate()
                    except BaseException:  # not locked (a lock_timeout, a cancel): no transaction, as SQLite's
                        self._began = False
                        self._ended()
                        self._raw.rollback()
                        raise
                    if _LOCK_STATS is not None:
                        _LOCK_STATS.locked(self)
            elif verb.startswith(("COMMIT", "END")):
                if self.in_transaction:
                    self.flush_deferred()
                    self._raw.commit()
                self._began = False
                self._ended()
            elif verb.startswith("ROLLBACK"):
                self._began = False
                self._ended()
                self._raw.rollback() if self.in_transaction else None
            else:  # SAVEPOINT x / RELEASE x / ROLLBACK TO x
                self._raw.execute(sql)
                self._savepoint_mark(sql)
        except psycopg.Error as exc:
            raise _mapped(exc, sql) from exc
        return Cursor(rowcount=-1)


def key_lock(schema: str, key: str) -> int:
    """The advisory lock of one key of a keyed transaction (`Connection.begin_keyed`)."""
    return int.from_bytes(hashlib.blake2b(f"marketsync:{schema}:key:{key}".encode(), digest_size=8).digest(),
                          "big", signed=True)


class _LockStats:
    """A debug counter (`MARKETSYNC_PG_LOCK_STATS=<folder>`): per call site of a write transaction, how often
    it took the writer lock, how long it waited for it and how long it held it (count, total, max seconds),
    written as JSON to <folder>/<pid>.json every 5 s. Off (None) unless the variable is set."""

    SKIP = ("cloud_sync/pg.py", "sitelink/sqlite.py", "contextlib.py", "cloud_sync/db.py")

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.stats: dict[str, list[float]] = {}
        self.mu = threading.Lock()
        threading.Thread(target=self._dump, daemon=True, name="pg-lock-stats").start()

    @classmethod
    def site(cls) -> str:
        f = sys._getframe(2)
        while f is not None and f.f_code.co_filename.endswith(cls.SKIP):
            f = f.f_back
        if f is None:
            return "?"
        up = f.f_back
        where = f"{os.path.relpath(f.f_code.co_filename)}:{f.f_lineno} {f.f_code.co_name}"
        return where + (f" <- {up.f_code.co_name}" if up is not None else "")

    def begin(self, conn: Connection) -> None:
        conn._ls = (self.site(), time.monotonic(), None)

    def locked(self, conn: Connection, keyed: bool = False) -> None:
        site, t0, _ = conn._ls
        conn._ls = (("[keyed] " if keyed else "") + site, t0, time.monotonic())

    def end(self, conn: Connection) -> None:
        ls = getattr(conn, "_ls", None)
        if ls is None or ls[2] is None:
            return
        conn._ls = None
        site, t0, t1 = ls
        wait, held = t1 - t0, time.monotonic() - t1
        with self.mu:
            st = self.stats.setdefault(site, [0, 0.0, 0.0, 0.0, 0.0])
            st[0] += 1
            st[1] += wait
            st[2] = max(st[2], wait)
            st[3] += held
            st[4] = max(st[4], held)

    def _dump(self) -> None:
        while True:
            time.sleep(5)
            with self.mu:
                data = {k: {"n": v[0], "wait_s": round(v[1], 3), "wait_max": round(v[2], 3),
                            "held_s": round(v[3], 3), "held_max": round(v[4], 3)} for k, v in self.stats.items()}
            try:
                with open(os.path.join(self.folder, f"{os.getpid()}.json"), "w") as fh:
                    json.dump(data, fh, indent=1, sort_keys=True)
            except OSError:
                pass


_LOCK_STATS: _LockStats | None = (_LockStats(os.environ["MARKETSYNC_PG_LOCK_STATS"])
                                  if os.environ.get("MARKETSYNC_PG_LOCK_STATS") else None)


def schema_for(path: str) -> str:
    """The schema a database file maps to under the test facility (`MARKETSYNC_PG_TEST_URL`)."""
    real = os.path.realpath(path)
    return "t_" + hashlib.blake2b(real.encode(), digest_size=10).hexdigest()


def statement_tag(schema: str) -> str:
    """What a statement of the domain starts with on a connection of `schema`: a comment naming the schema.
    psycopg prepares a statement on the server after a few executions, by its text, per server connection,
    and one pooled connection serves every schema of a database: PostgreSQL plans such a statement again
    when search_path changed, but refuses it when the other schema's table has other columns (`cached plan
    must not change result type`: a `SELECT *` while sellers' schemas are migrated in turn). With the
    comment each schema's statements are prepared statements of their own (and `pg_stat_activity` shows
    whose a query is)."""
    name = schema if re.fullmatch(r"[A-Za-z0-9_$]{1,63}", schema) else hashlib.blake2b(
        schema.encode(), digest_size=8).hexdigest()
    return f"/*{name}*/ "


def writer_lock_key(schema: str) -> int:
    """The advisory lock of a schema's one writer at a time (`BEGIN IMMEDIATE`)."""
    return int.from_bytes(hashlib.blake2b(f"marketsync:{schema}".encode(), digest_size=8).digest(), "big", signed=True)


class _Closed:
    """What a closed `Connection` holds instead of its PostgreSQL connection: any use is sqlite3's error."""

    def __getattr__(self, name: str) -> Any:
        raise ProgrammingError("Cannot operate on a closed database.")


_CLOSED = _Closed()


def _give_back(pool: ConnectionPool | None, raw: psycopg.Connection) -> None:
    """A wrapper's end: its transaction rolled back here and now (the writer lock and the savepoints go with
    it, before anyone waits on them), the rest its user may have left reset (`_reset`), then the connection
    to its pool, ready for the next checkout at once; or closed when it has no pool or is broken. (Reset
    here, not in the pool's worker: under load the worker lagged, a checkout found no connection ready
    and the pool opened another, up to `POOL_MAX`, `bench/sellers_pool.py`.)"""
    try:
        if not raw.closed and raw.info.transaction_status in (pq.TransactionStatus.INTRANS,
                                                              pq.TransactionStatus.INERROR):
            raw.rollback()
        if pool is not None and not raw.closed:
            _reset(raw)  # type: ignore[arg-type]
    except psycopg.Error:
        raw.close()
    if pool is None:
        raw.close()
        return
    try:
        pool.putconn(raw)
    except Exception:  # noqa: BLE001 - the pool is closed or not this connection's: the connection ends
        raw.close()


_returns: queue.SimpleQueue[tuple[ConnectionPool | None, psycopg.Connection]] = queue.SimpleQueue()
_returner: list[threading.Thread] = []


def _collected(pool: ConnectionPool | None, raw: psycopg.Connection) -> None:
    """A wrapper collected without close(): its connection is given back by the returner thread (a
    collection may run anywhere, even inside the pool's lock; SimpleQueue.put is safe there); one of its own
    is closed (it has no other user)."""
    if pool is None:
        raw.close()
    else:
        _returns.put((pool, raw))


def _start_returner() -> None:
    """The thread that gives back the connections of collected wrappers (started with the first pool)."""
    if not _returner:
        thread = threading.Thread(target=_return_collected, name="pg-returns", daemon=True)
        _returner.append(thread)
        thread.start()


def _return_collected() -> None:
    while True:
        _give_back(*_returns.get())


class _Raw(psycopg.Connection[Any]):
    """A pooled server connection and the `search_path` its last checkout chose (`_point`), kept per
    connection: one pool serves every schema of a database, so a connection lent to one seller's checkout
    may come back for another's. `path` is the value given to `set_config` (`_SESSION`: the session's own,
    None: not known, set on the next checkout), `shown` what the server said it is then; `default` the
    session's own value, read when the connection was opened."""

    path: str | None = None
    shown: str = ""
    default: str = ""


_SESSION = ""  # a checkout without a schema: the search_path the URL (its role, its database) gives


def _configure(raw: _Raw) -> None:
    """A new connection of a pool: adapters, and its own search_path noted (before any checkout sets one)."""
    _adapt(raw)
    shown = raw.execute("SELECT current_setting('search_path')", prepare=False).fetchone()
    raw.default = raw.shown = str(shown[0]) if shown else ""
    raw.path = _SESSION


def _reset(raw: _Raw) -> None:
    """The reset of a connection given back (`_give_back`): what outlives a transaction cleared,
    and its search_path compared with what its checkout set: changed meanwhile (a `SET search_path` of its
    user), the next checkout sets it again whatever it asks for, so no seller's schema reaches another's."""
    row = raw.execute("SELECT current_setting('search_path'), pg_advisory_unlock_all(); DISCARD TEMP;"
                      " RESET lock_timeout").fetchone()
    if row is None or row[0] != raw.shown:
        raw.path = None


def _point(raw: _Raw, url: str, path: str, schema: str | None) -> None:
    """A checkout's search_path on a pooled connection: `path` (a `set_config` value, `_SESSION` for the
    session's own), set only when the connection points elsewhere; `schema` (when the caller named one)
    created first if this process has not seen it yet."""
    if schema and (url, schema) not in _made:
        try:
            raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"', prepare=False)
        except psycopg.errors.UniqueViolation:
            pass  # another process created it at the same moment
        _made.add((url, schema))
    if raw.path == path:
        return
    value = raw.default if path == _SESSION else path
    row = raw.execute("SELECT set_config('search_path', %s, false)", (value,)).fetchone()
    raw.path, raw.shown = path, str(row[0]) if row else ""


def _quoted(schema: str) -> str:
    return '"' + schema.replace('"', '""') + '"'


_OPTION = re.compile(r"^(?:-c|--)search_path=(.*)$", re.S)


@functools.lru_cache(maxsize=256)
def _split_path(url: str) -> tuple[str, str]:
    """`url` without the search_path of its `options` (libpq's `-csearch_path=...`, as a seller's store URL
    carries it, `cloud_sync.tenants.schema_url`), its query's parameters written one way (`host=/tmp` and
    `host=%2Ftmp` are one database), and that search_path (`_SESSION` when it has none): one pool for every
    schema of a database. A URL whose options it cannot read for sure (escapes) stays whole."""
    parts = urlsplit(url)
    path, kept_segments = _SESSION, []
    for segment in parts.query.split("&") if parts.query else []:
        name, _, value = (unquote(x) for x in segment.partition("="))
        if name != "options":
            kept_segments.append(f"{quote(name, safe='')}={quote(value, safe='')}")
            continue
        if "\\" in value:
            return url, _SESSION
        tokens, kept = value.split(), []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token == "-c" and i + 1 < len(tokens) and tokens[i + 1].startswith("search_path="):
                token = "-c" + tokens[i + 1]
                i += 1
            m = _OPTION.match(token)
            if m:
                path = m.group(1)
            else:
                kept.append(token)
            i += 1
        if kept:
            kept_segments.append("options=" + quote(" ".join(kept), safe=""))
    return urlunsplit(parts._replace(query="&".join(kept_segments))), path


POOL_MAX = 40  # connections one pool (one database: every schema of it) keeps at most, idle or lent
POOL_IDLE_S = 60.0  # an idle connection above none is closed after this long
POOL_WAIT_S = 2.0  # how long `connect` waits for the pool before opening a connection of its own
POOLS_MAX = 16  # pools one process keeps, one per database URL (the least recently used one beyond is closed)
pooling = True  # False: every `connect` opens a connection of its own (the benches' baseline)

_pools: OrderedDict[str, ConnectionPool[_Raw]] = OrderedDict()
_pools_lock = threading.Lock()
_made: set[tuple[str, str]] = set()  # (pool URL, schema) this process made sure exists


def _use_schema(raw: psycopg.Connection, schema: str) -> None:
    try:
        raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except psycopg.errors.UniqueViolation:
        pass  # another process created it at the same moment
    raw.execute(f'SET search_path TO "{schema}"')


_current: dict[str, str] = {}  # the schema a URL chose itself (its search_path), by URL


def _pool(url: str, timeout: float) -> ConnectionPool[_Raw]:
    """The pool of one database URL (without its search_path: `_split_path`), made on first use."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is not None:
            _pools.move_to_end(url)
            return pool
        pool = ConnectionPool(url, connection_class=_Raw,
                              kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
                              min_size=0, max_size=POOL_MAX, max_idle=POOL_IDLE_S, configure=_configure,
                              name=f"marketsync:{redact(url)}", num_workers=2, open=True)
        _pools[url] = pool
        _start_returner()
        old = [_pools.popitem(last=False) for _ in range(len(_pools) - POOLS_MAX)]
    for gone, p in old:
        _forget_made(gone)
        p.close(timeout=0)  # its idle connections end now, the lent ones when given back
    return pool


def _forget_made(url: str) -> None:
    for key in [k for k in list(_made) if k[0] == url]:  # a copy: checkouts add to it meanwhile
        _made.discard(key)


def _drop_pool(url: str) -> None:
    with _pools_lock:
        pool = _pools.pop(url, None)
    _forget_made(url)
    if pool is not None:
        pool.close(timeout=0)


def pool_of(url: str) -> ConnectionPool[_Raw] | None:
    """The pool this process keeps for the database of `url` (any schema of it), if it has one."""
    with _pools_lock:
        return _pools.get(_split_path(reveal(url))[0])


@atexit.register
def close_pools() -> None:
    """Close every pool of this process (at exit; tests that want a fresh start)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
        _made.clear()
    for p in pools:
        p.close(timeout=1)


class NoSchema(OperationalError):
    """`connect(..., create=False)` to a schema that does not exist (a reader found no database there)."""


def _lend(url: str, schema: str | None, timeout: float, label: str) -> Connection | None:
    """A connection from the pool of `url`'s database, pointed at `schema` (or at the URL's own
    search_path); None when the pool has none to give now (every one lent, or nothing within
    `POOL_WAIT_S`: the server is down)."""
    base, own_path = _split_path(url)
    pool = _pool(base, timeout)
    stats = pool.get_stats()
    lent_out = stats.get("pool_available", 0) == 0 and stats.get("pool_size", 0) >= pool.max_size
    try:
        # every connection lent (a job thread holds one for its whole life): no wait for one coming back
        raw = None if lent_out else pool.getconn(timeout=min(timeout, POOL_WAIT_S))
    except (PoolTimeout, PoolClosed):
        raw = None  # closed meanwhile, or the server cannot be reached: a connection of its own
    if raw is None:
        return None
    try:
        _point(raw, base, _quoted(schema) if schema else own_path, schema)
        if not schema and url not in _current:
            current = raw.execute("SELECT current_schema()", prepare=False).fetchone()[0]  # type: ignore[index]
            if current is not None:
                _current[url] = str(current)
    except psycopg.Error as exc:
        if not (raw.closed or raw.broken):
            _give_back(pool, raw)
            raise _mapped(exc, "SET search_path") from exc
        # an idle connection the server dropped (it restarted): the wrapper finds it so at its first
        # statement and takes another (`Connection._lost`)
    return Connection(raw, schema=schema or _current.get(url, "public"), label=label, pool=pool)


def connect(url: str, *, schema: str | None = None, timeout: float = 30.0, create: bool = True,
            read_only: bool = False) -> Connection:
    """A connection to `url` (its password never appears in an error), in autocommit mode (transactions
    are explicit, as on SQLite), with `search_path` set to `schema` when given (created if missing, or
    `NoSchema` raised with `create=False`). `read_only`: every transaction of the session is read-only
    (PostgreSQL refuses a write in it), as SQLite's `mode=ro`."""
    given = url  # as given (a `Url` keeps its password out of every repr), for `Connection.reopen`
    url = reveal(url)
    label = redact(url)
    if pooling and create and not read_only:
        conn = _lend(url, schema, timeout, label)
        if conn is not None:
            conn.reopen = functools.partial(connect, given, schema=schema, timeout=timeout, create=create,
                                            read_only=read_only)
            return conn
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        if pooling:
            _drop_pool(_split_path(url)[0])  # its worker would go on trying to connect in the background
        message = str(exc).replace(url, label)
        raise OperationalError(f"cannot connect to {label}: {message}") from None
    _adapt(raw)
    try:
        if schema:
            if create:
                _use_schema(raw, schema)
            elif raw.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
                raise NoSchema(f"no schema {schema} at {label}")
            else:
                raw.execute(f'SET search_path TO "{schema}"')
        else:
            current = raw.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
            if current is None and not create:  # the URL's search_path names no schema that exists
                raise NoSchema(f"no schema at {label}")
            schema = str(current)
        if read_only:
            raw.execute("SET default_transaction_read_only TO on")
    except BaseException:
        raw.close()
        raise
    conn = Connection(raw, schema=schema, label=label)
    conn.reopen = functools.partial(connect, given, schema=schema, timeout=timeout, create=create, read_only=read_only)
    return conn


__all__ = ["COMPAT", "COMPAT_KEY", "Connection", "Error", "IntegrityError", "NoSchema", "OperationalError", "Row",
           "Url", "connect", "is_url", "redact", "reveal", "schema_for", "translate"]
