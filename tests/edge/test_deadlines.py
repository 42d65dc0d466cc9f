"""Deadlines on the task list as the warehouse reads them: the cloud sends them with whatever offset the
marketplace used; the list sorts them by the real moment and shows them in the box's own time zone; a
deadline the marketplace moved (`task_deadline`) re-sorts the list."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from edge_testkit import BAG, MUG, SOCKS, CloudRecorder, edge_config, pick_task, wait_for

from edge_agent import store
from edge_agent.app import create_app
from edge_agent.site import Site
from edge_agent.tasks import inbox


@pytest.fixture
def moscow(monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Moscow")  # the box runs in the warehouse's zone (UTC+3)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_deadlines_with_different_offsets_sort_by_the_moment_and_show_in_local_time(tmp_path, moscow) -> None:
    site = Site(edge_config(tmp_path), with_link=False)
    try:
        with store.transaction(site.conn):
            inbox.apply_catalog(site.conn, {"items": [MUG, BAG, SOCKS]})
            # 08:00 UTC = 11:00 in Moscow; 10:00+03:00 = 07:00 UTC, the earlier one; no deadline last
            inbox.apply_pick_task(site.conn, pick_task("z", [(MUG, 1)], deadline="2026-11-27T08:00:00Z"))
            inbox.apply_pick_task(site.conn, pick_task("m", [(BAG, 1)], deadline="2026-11-27T10:00:00+03:00"))
            inbox.apply_pick_task(site.conn, pick_task("n", [(SOCKS, 1)], deadline=None))
        c = create_app(site).test_client()
        assert c.post("/login", data={"name": "Анна", "pin": "4321", "station": "pack-1"}).status_code == 302
        html = c.get("/").get_data(as_text=True)
        assert html.index("Nm") < html.index("Nz") < html.index("Nn")
        assert "до 27.11 10:00" in html and "до 27.11 11:00" in html
        assert "08:00" not in html and "07:00" not in html
    finally:
        site.close()


def test_a_deadline_without_an_offset_or_not_a_date_is_kept_as_it_came() -> None:
    assert inbox.utc_deadline("2026-11-27T10:00:00") == "2026-11-27T10:00:00"
    assert inbox.utc_deadline("tomorrow") == "tomorrow"
    assert inbox.utc_deadline(None) is None
    assert inbox.utc_deadline("2026-11-27T10:00:00+03:00") == "2026-11-27T07:00:00Z"


def test_a_moved_deadline_over_the_link_re_sorts_the_packers_list(broker, tmp_path, moscow) -> None:
    """The cloud tells the site the marketplace moved an order's deadline (real Mosquitto, the site's own
    handlers): the task takes it, the list sorts and shows it; a task the site does not hold, or holds
    cancelled, is left alone; a deadline that is empty is refused with its reason."""
    cloud = CloudRecorder(tmp_path / "cloud.sqlite", broker)
    cloud.link.start()
    cfg = edge_config(tmp_path, broker)
    site = Site(cfg)
    site.start()
    seen = store.open_conn(cfg.db_path)  # the test's own reads (the site's connection is its threads')
    try:
        cloud.send("catalog", {"items": [MUG, BAG, SOCKS]})
        cloud.send("pick_task", pick_task("a", [(MUG, 1)], deadline="2026-11-27T08:00:00Z"))
        cloud.send("pick_task", pick_task("b", [(BAG, 1)], deadline="2026-11-27T09:00:00Z"))
        cloud.send("pick_task", pick_task("c", [(SOCKS, 1)], deadline="2026-11-27T10:00:00Z"))
        cloud.send("cancel_task", {"task_id": "c", "order_id": "o-c", "reason": "cancelled"})

        def deadlines() -> dict[str, str | None]:
            return {r["task_id"]: r["deadline"] for r in store.rows(seen, "SELECT task_id, deadline FROM tasks")}

        assert wait_for(lambda: len(deadlines()) == 3, 30)
        # "a" moves two days later, past "b" (with Ozon's offset style); "c" is cancelled; "x" never came
        cloud.send("task_deadline", {"task_id": "a", "order_id": "o-a", "deadline": "2026-11-29T12:00:00+03:00"})
        cloud.send("task_deadline", {"task_id": "c", "order_id": "o-c", "deadline": "2026-11-26T00:00:00Z"})
        cloud.send("task_deadline", {"task_id": "x", "order_id": "o-x", "deadline": "2026-11-26T00:00:00Z"})
        cloud.send("task_deadline", {"task_id": "b", "order_id": "o-b", "deadline": ""})
        assert wait_for(lambda: deadlines()["a"] == "2026-11-29T09:00:00Z", 30), deadlines()
        assert wait_for(lambda: store.rows(seen, "SELECT reason FROM link_dead_letters"), 30)
        [dead] = store.rows(seen, "SELECT reason FROM link_dead_letters")
        assert "deadline is empty" in dead["reason"]
        assert deadlines() == {"a": "2026-11-29T09:00:00Z", "b": "2026-11-27T09:00:00Z", "c": "2026-11-27T10:00:00Z"}
        c = create_app(site).test_client()
        assert c.post("/login", data={"name": "Анна", "pin": "4321", "station": "pack-1"}).status_code == 302
        html = c.get("/").get_data(as_text=True)
        assert html.index("Nb") < html.index("Na") and "до 29.11 12:00" in html and '"sub">до 27.11 11:00' not in html
        # the packer sees that it moved, and from when; "b" kept its own: nothing said
        assert 'title="было до 27.11 11:00">срок перенесён</span>' in html, html
        assert html.count('class="moved"') == 1
        # moved again, now earlier than it first was: said so; the same deadline once more changes nothing
        cloud.send("task_deadline", {"task_id": "a", "order_id": "o-a", "deadline": "2026-11-27T06:00:00Z"})
        cloud.send("task_deadline", {"task_id": "a", "order_id": "o-a", "deadline": "2026-11-27T06:00:00Z"})
        assert wait_for(lambda: deadlines()["a"] == "2026-11-27T06:00:00Z", 30), deadlines()
        html = c.get("/").get_data(as_text=True)
        assert html.index("Na") < html.index("Nb")
        assert 'title="было до 27.11 11:00">срок стал раньше</span>' in html, html
        with store.transaction(seen):
            assert not inbox.apply_deadline(seen, {"task_id": "a", "order_id": "o-a",
                                                   "deadline": "2026-11-27T09:00:00+03:00"})  # the same moment
    finally:
        seen.close()
        site.stop()
        site.close()
        cloud.link.stop()
