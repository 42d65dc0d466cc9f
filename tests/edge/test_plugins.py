"""The site's hooks for plugins: what comes down is told to listeners, plugins named in edge.toml start
and stop with the site, and the demo's simulated packer (marketsync/demo_packer.py) works a site through
them alone."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from edge_testkit import MUG, SHIRT, deliver_label, edge_config, label_png, outbox, pick_task, send, wait_for

from edge_agent import store
from edge_agent.config import AUTO_PACKER, config_from_dict
from edge_agent.devices.printers import open_printer
from edge_agent.link_handlers import DownHandlers
from edge_agent.site import Site, load_plugin
from edge_agent.tasks import inbox
from edge_agent.tasks.marking import parse
from marketsync.demo_packer import demo_code, unit_serial
from sitelink import Reject


def test_down_messages_tell_the_listeners_of_new_tasks_and_handovers(conn) -> None:
    told: list[tuple[str, dict[str, Any]]] = []
    committed: list[str] = []
    handlers = DownHandlers(send, "main", after_commit=lambda what, **i: committed.append(what),
                            tell=lambda event, **i: told.append((event, i)))
    body = pick_task("t1", [(MUG, 1)])
    with store.transaction(conn):
        handlers.pick_task(conn, SimpleNamespace(body=body))
        handlers.pick_task(conn, SimpleNamespace(body=body))  # the same task again: not new
        handlers.handover(conn, SimpleNamespace(body={"handover_id": "h1", "marketplace": "ozon",
                                                      "order_ids": ["o-t1"]}))
    assert told == [("new_task", {"task_id": "t1"}), ("handover", {"handover_id": "h1"})]
    assert committed == ["task", "task", "handover"]
    with pytest.raises(Reject), store.transaction(conn):
        handlers.pick_task(conn, SimpleNamespace(body=pick_task("t2", [])))  # no lines: never usable
    assert len(told) == 2


def test_a_listener_that_fails_does_not_stop_the_others(tmp_path) -> None:
    site = Site(edge_config(tmp_path), with_link=False, with_devices=False)
    heard: list[str] = []
    site.listen("new_task", lambda task_id: 1 / 0)
    site.listen("new_task", lambda task_id: heard.append(task_id))
    site._tell("new_task", task_id="t1")
    assert heard == ["t1"]
    with pytest.raises(ValueError, match="unknown site event"):
        site.listen("lunch", heard.append)
    site.close()


PLUGIN = '''
STARTED = []

class Recorder:
    def __init__(self, site):
        self.site = site
        site.listen("new_task", lambda task_id: STARTED.append(("task", task_id)))

    def start(self):
        STARTED.append(("start", self.site.stopping))

    def stop(self):
        STARTED.append(("stop", self.site.stopping))

def attach(site):
    STARTED.append(("attach", site.cfg.site_id))
    return Recorder(site)
'''


def test_plugins_named_in_edge_toml_start_and_stop_with_the_site(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_site_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = config_from_dict({"site": {"db_path": str(tmp_path / "site.sqlite"),
                                     "plugins": ["my_site_plugin:attach"]},
                            "printer": {"kind": "virtual", "out_dir": str(tmp_path / "labels")}}, tmp_path)
    assert cfg.plugins == ["my_site_plugin:attach"] and cfg.plugin_entries() == ["my_site_plugin:attach"]
    site = Site(cfg, with_link=False)
    site.start()
    import my_site_plugin

    site._tell("new_task", task_id="t9")
    site.stop()
    site.close()
    assert my_site_plugin.STARTED == [("attach", "site-1"), ("start", False), ("task", "t9"), ("stop", True)]


def test_auto_pack_names_the_demo_packer_once() -> None:
    assert config_from_dict({}).plugin_entries() == []
    on = config_from_dict({"tasks": {"auto_pack": True}, "site": {"plugins": [AUTO_PACKER]}})
    assert on.plugin_entries() == [AUTO_PACKER]
    assert config_from_dict({"tasks": {"auto_pack": True}}).plugin_entries() == [AUTO_PACKER]
    assert load_plugin(AUTO_PACKER).__module__ == "marketsync.demo_packer"


@pytest.mark.parametrize("entry", ["marketsync.demo_packer", ":attach", "marketsync.demo_packer:"])
def test_a_plugin_entry_names_a_module_and_a_function(entry: str) -> None:
    with pytest.raises(ValueError, match="package.module:function"):
        load_plugin(entry)


def test_the_demo_packers_marking_codes_are_valid() -> None:
    gtin = MUG["barcode"].zfill(14)
    code = parse(demo_code(gtin, "t1-0100000"))
    assert (code.gtin, code.serial, code.key_id, len(code.crypto)) == (gtin, "t1-0100000", "EE10", 44)


def packer_site(tmp_path: Path) -> Site:
    """A site with the demo's packer and no devices of its own but the virtual printer (PNG files in
    tmp_path/labels): no scanner to feed, the packer scans straight into the site."""
    site = Site(edge_config(tmp_path, auto_pack=True, auto_pack_delay_s=0.0), with_link=False,
                with_devices=False)
    site.devices.printer = open_printer({"kind": "virtual", "out_dir": str(tmp_path / "labels")})
    return site


def test_the_demo_packer_packs_and_hands_over_without_devices(tmp_path: Path) -> None:
    """No scanner to feed: the packer scans straight into the site, tasks it finds at start first."""
    site = packer_site(tmp_path)
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [MUG, SHIRT]})
        inbox.apply_pick_task(site.conn, pick_task("t1", [(MUG, 2), (SHIRT, 1)]))
        inbox.apply_label(site.conn, {"order_id": "o-t1", "format": "png", "data_b64": label_png("t1")})
    site.start()
    try:
        assert wait_for(lambda: site.row("SELECT state FROM tasks WHERE task_id = 't1'")["state"] == "packed")
        assert site.row("SELECT COUNT(*) AS n FROM marking_codes WHERE task_id = 't1'")["n"] == 1
        assert site.row("SELECT task_id FROM stations WHERE station = 'auto'")["task_id"] == "t1"
        with store.transaction(site.conn):
            inbox.apply_handover(site.conn, {"handover_id": "h1", "marketplace": "ozon", "order_ids": ["o-t1"]})
        site._tell("handover", handover_id="h1")  # what the link's handler tells
        assert wait_for(lambda: site.row("SELECT state FROM handovers WHERE handover_id = 'h1'")["state"] != "open")
        assert site.row("SELECT state FROM tasks WHERE task_id = 't1'")["state"] == "handed_over"
        # the packer closes the hand-over, then turns the station back to packing: a step of its own
        assert wait_for(lambda: site.row("SELECT mode FROM stations WHERE station = 'auto'")["mode"] == "pack")
        progress = [b["state"] for t, b in outbox(site.conn) if t == "task_progress"]
        assert "packed" in progress and json.dumps(progress)
    finally:
        site.stop()
        site.close()


def test_demo_marking_serials_differ_for_tasks_whose_ids_end_alike():
    wb, mm = unit_serial("pick-wb-main:5000000034", 1, 0), unit_serial("pick-mm-main:9300000000034", 1, 0)
    assert wb != mm and len(wb) == len(mm) == 13
    assert len({unit_serial(f"pick-x:{n}", line, unit) for n in range(300) for line in (1, 2) for unit in range(3)}) \
        == 300 * 2 * 3


def test_the_demo_packer_takes_up_an_open_handover_after_a_restart(tmp_path: Path) -> None:
    """A courier who came before the box restarted still gets the parcels: the packer finds the open
    hand-over at start, as it finds the tasks."""
    site = packer_site(tmp_path)
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [MUG]})
        inbox.apply_pick_task(site.conn, pick_task("t2", [(MUG, 1)]))
        inbox.apply_label(site.conn, {"order_id": "o-t2", "format": "png", "data_b64": label_png("t2")})
        inbox.apply_handover(site.conn, {"handover_id": "h2", "marketplace": "ozon", "order_ids": ["o-t2"]})
    site.start()  # nobody tells the packer of h2 now: it came before this start
    try:
        assert wait_for(lambda: site.row("SELECT state FROM handovers WHERE handover_id = 'h2'")["state"] != "open")
        assert site.row("SELECT state FROM tasks WHERE task_id = 't2'")["state"] == "handed_over"
    finally:
        site.stop()
        site.close()


def test_the_demo_packer_hands_a_parcel_over_only_once_its_label_printed(tmp_path: Path) -> None:
    """The courier comes before the marketplace's label: the packer waits for the label (and packs the
    next order meanwhile), never hands the parcel over without it, and closes the hand-over once the
    label came and printed."""
    site = packer_site(tmp_path)
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [MUG, SHIRT]})
        inbox.apply_pick_task(site.conn, pick_task("t1", [(MUG, 1)]))  # its label has not come
    site.start()
    try:
        assert wait_for(lambda: site.row("SELECT state FROM tasks WHERE task_id = 't1'")["state"] == "packed")
        with store.transaction(site.conn):
            inbox.apply_handover(site.conn, {"handover_id": "h1", "marketplace": "ozon", "order_ids": ["o-t1"]})
            inbox.apply_pick_task(site.conn, pick_task("t2", [(SHIRT, 1)]))
        site._tell("handover", handover_id="h1")
        site._tell("new_task", task_id="t2")
        assert wait_for(lambda: site.row("SELECT state FROM tasks WHERE task_id = 't2'")["state"] == "packed", timeout=30)
        assert not wait_for(lambda: site.row("SELECT state FROM handovers WHERE handover_id = 'h1'")["state"] != "open",
                            timeout=3.0)  # it waits, re-checking every second
        assert site.row("SELECT COUNT(*) AS n FROM handover_scans")["n"] == 0
        assert site.row("SELECT state FROM tasks WHERE task_id = 't1'")["state"] == "packed"
        deliver_label(site.conn, "o-t1")
        site.printing.wake()
        assert wait_for(lambda: site.row("SELECT state FROM handovers WHERE handover_id = 'h1'")["state"] == "closed",
                        timeout=30)
        printed = site.row("SELECT done_at FROM print_jobs WHERE order_id = 'o-t1' AND kind = 'label'")["done_at"]
        scanned = site.row("SELECT ts FROM handover_scans WHERE order_id = 'o-t1'")["ts"]
        assert printed is not None and scanned >= printed
        assert site.row("SELECT state FROM tasks WHERE task_id = 't1'")["state"] == "handed_over"
        labels = [p.name for p in (tmp_path / "labels").glob("*.png")]
        assert len([n for n in labels if "o-t1" in n]) == 1 and not list((tmp_path / "labels").glob("*.part"))
    finally:
        site.stop()
        site.close()


def test_the_demo_packer_takes_a_returned_parcel_in_and_the_link_tells_it(tmp_path: Path) -> None:
    """A return the cloud says is coming: the link's handler tells the site's listeners, and the demo's
    packer takes it in on the «Возврат» screen — every unit scanned, the return reported up."""
    told: list[tuple[str, dict[str, Any]]] = []
    handlers = DownHandlers(send, "main", after_commit=lambda what, **i: None,
                            tell=lambda event, **i: told.append((event, i)))
    site = packer_site(tmp_path)
    body = {"return_id": "wb:7#1", "order_id": "wb:7", "number": "7", "parcel_codes": ["7", "wb:7"],
            "lines": [{"item_id": MUG["item_id"], "quantity": 2, "barcode": MUG["barcode"], "name": MUG["name"]}]}
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [MUG]})
        handlers.return_expected(site.conn, SimpleNamespace(body=body))
    assert told == [("return", {"return_id": "wb:7#1"})]
    site.start()  # the packer finds the return waiting at start
    try:
        assert wait_for(lambda: site.row("SELECT state FROM returns WHERE return_id = 'wb:7#1'")["state"] == "received")
        (received,) = [b for t, b in outbox(site.conn) if t == "return_received"]
        assert [(ln["item_id"], ln["good"] + ln["defective"]) for ln in received["lines"]] == [(MUG["item_id"], 2)]
        # the packer closes the hand-over, then turns the station back to packing: a step of its own
        assert wait_for(lambda: site.row("SELECT mode FROM stations WHERE station = 'auto'")["mode"] == "pack")
    finally:
        site.stop()
        site.close()
