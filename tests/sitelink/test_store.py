"""The link's tables: schema bookkeeping shared with the cloud's migrations; the outbox row commits or
rolls back with the caller's own change."""

from __future__ import annotations

import sqlite3

import pytest
from ulid import ULID

from sitelink import LinkError, envelope, sqlite, store
from sitelink.messages import EncodedBody

from .conftest import delta_body, pick_body


def test_ensure_schema_is_idempotent_and_recorded(tmp_path):
    conn = sqlite.connect(tmp_path / "a.db")
    store.ensure_schema(conn)
    store.ensure_schema(conn)
    rows = conn.execute("SELECT module, idx FROM schema_migrations").fetchall()
    assert [tuple(r) for r in rows] == [("sitelink.store", i) for i in range(len(store.MIGRATIONS))]


def test_cloud_migrations_and_ensure_schema_agree(tmp_path):
    import cloud_sync.schema as db
    conn = db.open_db(tmp_path / "cloud.db")  # applies sitelink.store through schema.PARTS
    before = conn.execute("SELECT COUNT(*) FROM schema_migrations WHERE module='sitelink.store'").fetchone()[
        0
    ]
    store.ensure_schema(conn)
    after = conn.execute("SELECT COUNT(*) FROM schema_migrations WHERE module='sitelink.store'").fetchone()[0]
    assert before == after == len(store.MIGRATIONS)
    conn2 = sqlite.connect(tmp_path / "edge.db")
    store.ensure_schema(conn2)
    assert db.migrate(conn2) is not None  # the other order: nothing of ours applied twice
    tables = {r[0] for r in conn2.execute("SELECT name FROM sqlite_master WHERE name LIKE 'link_%'")}
    assert {"link_outbox", "link_inbox", "link_dead_letters", "link_in_seq", "link_out_seq"} <= tables


def test_outbox_row_commits_and_rolls_back_with_the_callers_change(tmp_path):
    conn = sqlite.connect(tmp_path / "a.db")
    store.ensure_schema(conn)
    conn.execute("CREATE TABLE stock (item TEXT, qty INTEGER)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO stock VALUES ('a', 1)")
    store.enqueue(conn, "site", "site-1", "stock_delta", delta_body(1))
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0] == 0
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO stock VALUES ('a', 1)")
    e1 = store.enqueue(conn, "site", "site-1", "stock_delta", delta_body(1))
    e2 = store.enqueue(conn, "site", "site-1", "stock_delta", delta_body(2))
    conn.execute("COMMIT")
    assert (e1.seq, e2.seq) == (1, 2)
    assert [r[0] for r in conn.execute("SELECT seq FROM link_outbox ORDER BY seq")] == [1, 2]
    # outside any transaction the enqueue commits on its own
    e3 = store.enqueue(conn, "site", "site-1", "stock_delta", delta_body(3))
    assert not conn.in_transaction and e3.seq == 3


def test_python_default_transactions_are_joined(tmp_path):
    """A caller using sqlite3's default (implicit BEGIN) mode: the row waits for the caller's commit."""
    conn = sqlite3.connect(tmp_path / "a.db")
    store.ensure_schema(conn)
    conn.execute("CREATE TABLE stock (item TEXT, qty INTEGER)")
    conn.commit()
    conn.execute("INSERT INTO stock VALUES ('a', 1)")  # implicit BEGIN
    store.enqueue(conn, "site", "site-1", "stock_delta", delta_body(1))
    conn.rollback()
    assert conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("role", "site", "msg_type", "body", "reason"),
    [
        ("site", "site-1", "pick_task", pick_body(1), "the site sends only up"),
        ("cloud", "site-1", "stock_delta", delta_body(1), "the cloud sends only down"),
        ("cloud", "", "pick_task", pick_body(1), "site id"),
        ("cloud", "site-1", "nope", {}, "unknown message type"),
        ("cloud", "site-1", "pick_task", {"task_id": 1}, "must be str"),
    ],
)
def test_enqueue_refuses_what_breaks_the_contract(tmp_path, role, site, msg_type, body, reason):
    conn = sqlite.connect(tmp_path / "a.db")
    store.ensure_schema(conn)
    with pytest.raises(ValueError, match=reason):
        store.enqueue(conn, role, site, msg_type, body)
    assert conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0] == 0
    assert not conn.in_transaction
    assert LinkError.__mro__[1] is ValueError


def test_enqueue_many_writes_a_batch_in_order_after_the_single_messages(tmp_path):
    """A batch takes the next seqs of the site's stream, in its order, each with its own ULID; the
    messages enqueued one by one before and after it keep their places."""
    conn = sqlite.connect(tmp_path / "a.db")
    store.ensure_schema(conn)
    first = store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(0))
    envs = store.enqueue_many(conn, "cloud", "site-1", [("pick_task", pick_body(i)) for i in range(1, 6)])
    last = store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(6))
    assert [e.seq for e in (first, *envs, last)] == list(range(1, 8))
    rows = conn.execute("SELECT seq, id, payload FROM link_outbox ORDER BY seq").fetchall()
    assert [envelope.parse(r[2]).body["task_id"] for r in rows] == [f"t{i}" for i in range(7)]
    ids = [r[1] for r in rows]
    assert len(set(ids)) == 7 and ids[1:6] == sorted(ids[1:6])
    for r in rows:
        assert str(ULID.from_str(r[1])) == r[1]
        assert envelope.parse(r[2]).id == r[1]
    other = store.enqueue_many(conn, "cloud", "site-2", [("pick_task", pick_body(9))])
    assert other[0].seq == 1  # each site its own stream
    assert store.enqueue_many(conn, "cloud", "site-1", []) == []


def test_enqueue_many_writes_nothing_when_one_message_breaks_the_contract(tmp_path):
    conn = sqlite.connect(tmp_path / "a.db")
    store.ensure_schema(conn)
    with pytest.raises(ValueError, match="must be str"):
        store.enqueue_many(conn, "cloud", "site-1", [("pick_task", pick_body(1)), ("pick_task", {"task_id": 1})])
    assert conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM link_out_seq").fetchone()[0] == 0
    assert store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(2)).seq == 1


def test_new_ids_are_distinct_ordered_ulids_of_one_moment():
    ids = envelope.new_ids(3000)
    assert len(set(ids)) == 3000 and ids == sorted(ids)
    parsed = [ULID.from_str(i) for i in ids]
    assert [str(u) for u in parsed] == ids
    assert len({u.milliseconds for u in parsed}) == 1
    assert [int(b) - int(a) for a, b in zip(parsed, parsed[1:], strict=False)] == [1] * 2999
    assert envelope.new_ids(0) == []


def test_new_ids_carry_this_moment_and_fresh_randomness():
    """The ids are written without a ULID object: their time is now, their random part differs per call
    (1 id or many), and each reads back as the same ULID."""
    import time

    firsts = set()
    for n in (1, 1, 2, 1000) * 5:
        before = time.time_ns() // 1_000_000
        ids = envelope.new_ids(n)
        after = time.time_ns() // 1_000_000
        parsed = [ULID.from_str(i) for i in ids]
        assert all(before <= u.milliseconds <= after for u in parsed) and [str(u) for u in parsed] == ids
        firsts.add(ids[0][10:])
    assert len(firsts) == 20


def test_record_inbox_writes_every_row_once_in_statements_of_many(tmp_path):
    """Rows go in 100 per statement and the rest one by one: every count is recorded whole; an id already
    in the inbox keeps its first row (a copy changes nothing)."""
    conn = sqlite.connect(tmp_path / "s.db")
    store.ensure_schema(conn)
    seq = 0
    for n in (0, 1, 99, 100, 101, 250):
        ids = envelope.new_ids(n)
        rows = [(i, "site-1", seq + k + 1, "pick_task", "applied", 1.0) for k, i in enumerate(ids)]
        seq += n
        store.record_inbox(conn, rows)
        assert store.in_inbox(conn, ids) == set(ids)
    (total,) = conn.execute("SELECT COUNT(*) FROM link_inbox").fetchone()
    assert total == seq == 551
    again = conn.execute("SELECT id, peer, seq, type FROM link_inbox ORDER BY seq LIMIT 150").fetchall()
    store.record_inbox(conn, [(r[0], r[1], r[2], r[3], "dead", 2.0) for r in again])
    assert tuple(conn.execute("SELECT COUNT(*), SUM(outcome = 'applied') FROM link_inbox").fetchone()) == (551, 551)


def test_a_single_send_in_an_open_transaction_writes_what_a_batch_writes(tmp_path):
    """`enqueue` of one message inside the caller's transaction (its short way) writes the row `enqueue_many`
    writes: the next seq of the stream, a fresh ULID of this moment, the canonical text; it rolls back with the
    caller, counter included; inside a keyed transaction it says it needs the whole store, as the batch does."""
    import time

    conn = sqlite.connect(tmp_path / "a.db")
    store.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(0))
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT COUNT(*) FROM link_out_seq").fetchone()[0] == 0
    text = envelope.canonical_json(pick_body(5))  # a body that carries its canonical text (a batch's maker)
    conn.execute("BEGIN IMMEDIATE")
    before = time.time_ns() // 1_000_000
    envs = [store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(1))]
    envs += store.enqueue_many(conn, "cloud", "site-1", [("pick_task", pick_body(2))])
    envs.append(store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(3)))
    odd = {**pick_body(4), "number": "Заказ «4» \"x\"\n", "label": {"b": 1.5, "a": None}}  # escaped, sorted
    envs.append(store.enqueue(conn, "cloud", "склад-2", "pick_task", odd))
    envs.append(store.enqueue(conn, "cloud", "site-1", "pick_task", EncodedBody(pick_body(5), text)))
    after = time.time_ns() // 1_000_000
    conn.execute("COMMIT")
    assert [(e.site, e.seq) for e in envs] == [("site-1", 1), ("site-1", 2), ("site-1", 3), ("склад-2", 1),
                                               ("site-1", 4)]
    rows = conn.execute("SELECT peer, seq, id, type, payload, created_at FROM link_outbox ORDER BY rowid").fetchall()
    assert len(rows) == 5 and len({r[2] for r in rows}) == 5
    for env, (peer, seq, msg_id, msg_type, payload, created) in zip(envs, rows, strict=True):
        assert (peer, seq, msg_id, msg_type) == (env.site, env.seq, env.id, "pick_task")
        assert payload == envelope.canonical(env.to_dict()).decode("ascii") == env.to_json()
        assert envelope.parse(payload) == env
        assert str(ULID.from_str(msg_id)) == msg_id and before <= ULID.from_str(msg_id).milliseconds <= after
        assert abs(created - time.time()) < 60
    conn.execute("BEGIN IMMEDIATE")
    conn.lock_keys = frozenset({"link:site-2"})  # as a keyed transaction of PostgreSQL's store says it holds
    try:  # another site's link key does not cover this site's counter and outbox: both ways give way
        with pytest.raises(sqlite.NeedsExclusive):
            store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(5))
        with pytest.raises(sqlite.NeedsExclusive):
            store.enqueue_many(conn, "cloud", "site-1", [("pick_task", pick_body(5))])
        conn.lock_keys = frozenset({"link:site-1"})  # its own link's key does, on both ways
        assert store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(5)).site == "site-1"
        assert len(store.enqueue_many(conn, "cloud", "site-1", [("pick_task", pick_body(5))])) == 1
    finally:
        del conn.lock_keys
        conn.execute("ROLLBACK")


def test_new_id_is_a_ulid_of_this_moment_with_fresh_randomness():
    import time

    ids = []
    for _ in range(2000):
        before = time.time_ns() // 1_000_000
        msg_id = envelope.new_id()
        after = time.time_ns() // 1_000_000
        u = ULID.from_str(msg_id)
        assert str(u) == msg_id and len(msg_id) == 26 and before <= u.milliseconds <= after
        ids.append(msg_id)
    assert len(set(ids)) == 2000 and len({i[10:] for i in ids}) == 2000


def test_a_send_leaves_the_callers_row_factory_as_it_is(tmp_path):
    """The caller's connection keeps its rows: a connection whose `cursor()` is itself (PostgreSQL's store)
    would have lost its row factory to a cursor of plain tuples made for the counter's step."""

    class SelfCursor(sqlite.Connection):
        def cursor(self, *args):  # noqa: ARG002 - as `cloud_sync.pg.Connection.cursor`
            return self

    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None, factory=SelfCursor)
    conn.row_factory = sqlite3.Row
    store.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(1))
    conn.execute("COMMIT")
    assert conn.row_factory is sqlite3.Row
    assert conn.execute("SELECT seq FROM link_outbox").fetchone()["seq"] == 1
