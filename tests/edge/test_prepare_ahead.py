"""Labels rendered ahead: the print worker prepares the labels of orders still to pack (earliest deadline
first, each once), so the scan that packs an order only sends its label; cached labels keep no raster
(the picture is ~0.6 MB a label, the printer gets the payload)."""

from __future__ import annotations

import threading
import time

from edge_testkit import BAG, MUG, deliver_label, edge_config, make_conn, pick_task, send, wait_for

from edge_agent import labels, store
from edge_agent.background import BACKGROUND_NICE, thread_nice
from edge_agent.changes import Changes
from edge_agent.device_hub import DeviceHub
from edge_agent.printing import PrintQueue
from edge_agent.site import Site
from edge_agent.tasks import inbox


def test_labels_of_orders_to_pack_are_prepared_ahead_once(tmp_path):
    conn = make_conn(tmp_path / "site.sqlite")
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("a1", [(MUG, 1)], deadline="2026-11-27T09:00:00Z"))
        inbox.apply_pick_task(conn, pick_task("a2", [(BAG, 1)], deadline="2026-11-27T08:00:00Z"))
        inbox.apply_pick_task(conn, pick_task("a3", [(BAG, 1)]))  # no label yet: nothing to prepare
    deliver_label(conn, "o-a1")
    deliver_label(conn, "o-a2")
    cfg = edge_config(tmp_path)
    hub = DeviceHub(cfg, Changes())
    hub.open(lambda *_: None)
    queue = PrintQueue(conn, send, hub, Changes(), cfg)
    labels.clear_cache()
    assert queue.prepare_ahead(limit=1) == 1  # the earliest deadline first
    assert queue.prepare_ahead(limit=1) == 1  # then the next one, past those already prepared
    assert queue.prepare_ahead() == 0  # each once
    assert len(labels._CACHE) == 2
    assert all(job.raster is None and job.payload for job in labels._CACHE.values())


def test_labels_are_rendered_ahead_by_a_background_thread_that_gives_way_to_printing(tmp_path):
    """The print worker only prints; the labels ahead are rendered by a thread of their own at a
    background priority, so on one core a scan's label never waits for another order's being rendered."""
    cfg = edge_config(tmp_path)
    site = Site(cfg, with_link=False)
    with store.transaction(site.conn):
        inbox.apply_pick_task(site.conn, pick_task("a1", [(MUG, 1)]))
    deliver_label(site.conn, "o-a1")
    labels.clear_cache()
    site.start()
    try:
        assert wait_for(lambda: len(labels._CACHE) == 1)  # rendered ahead, nothing packed
        threads = {t.name: t for t in threading.enumerate()}
        assert thread_nice(threads["labels-ahead"].native_id) == BACKGROUND_NICE
        assert thread_nice(threads["print-queue"].native_id) < BACKGROUND_NICE
    finally:
        site.begin_stop()
        site.stop()
        site.close()


def test_labels_ahead_are_read_without_the_sites_lock(tmp_path):
    """The labels-ahead worker reads on a connection of its own: while a scan's transaction holds the
    site's lock it still renders, and its reads (after every print) never hold up a scan."""
    site = Site(edge_config(tmp_path), with_link=False)
    with store.transaction(site.conn):
        inbox.apply_pick_task(site.conn, pick_task("a1", [(MUG, 1)]))
    deliver_label(site.conn, "o-a1")
    labels.clear_cache()
    try:
        with store.locked():  # a long transaction of the site's
            site.start()
            assert wait_for(lambda: len(labels._CACHE) == 1, timeout=5)
    finally:
        site.begin_stop()
        site.stop()
        site.close()


def test_a_new_label_of_the_same_size_is_rendered_ahead(tmp_path):
    """A label is known by its row, not by its length: an order's label sent again with other bytes of
    the same length (a re-issued posting number) is rendered ahead too."""
    import base64

    def zpl_label(number: str) -> None:
        with store.transaction(conn):
            inbox.apply_label(conn, {"order_id": "o-a1", "format": "zpl", "data_b64": base64.b64encode(
                f"^XA^PW464^LL320^FO40,70^BCN,140,Y,N,N^FD{number}^FS^XZ".encode()).decode()})

    conn = make_conn(tmp_path / "site.sqlite")
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("a1", [(MUG, 1)]))
    zpl_label("WB400000001")
    cfg = edge_config(tmp_path, tables={"printer": {"kind": "virtual", "out_dir": str(tmp_path / "labels"),
                                                    "language": "zpl"}})
    hub = DeviceHub(cfg, Changes())
    hub.open(lambda *_: None)
    queue = PrintQueue(conn, send, hub, Changes(), cfg)
    labels.clear_cache()
    assert queue.prepare_ahead() == 1 and queue.prepare_ahead() == 0
    zpl_label("WB400000002")  # the same length, other bytes
    assert queue.prepare_ahead() == 1
    assert len(labels._CACHE) == 2


def test_labels_are_rendered_ahead_in_the_pauses_of_packing(tmp_path):
    """While packers scan, rendering ahead waits (a render running beside a scan made it ~3x slower on
    one core); in the first pause of QUIET_S the labels of the orders still to pack are rendered."""
    import time

    from edge_agent.printing import QUIET_S

    site = Site(edge_config(tmp_path), with_link=False)
    with store.transaction(site.conn):
        inbox.apply_pick_task(site.conn, pick_task("a1", [(MUG, 1)]))
    deliver_label(site.conn, "o-a1")
    labels.clear_cache()
    site.printing.active()  # the packer scanned just before
    site.start()
    try:
        until = time.monotonic() + 4 * QUIET_S
        while time.monotonic() < until:  # a packer scanning away
            site.printing.active()
            site.retry_printing()
            time.sleep(QUIET_S / 5)
        assert len(labels._CACHE) == 0
        assert wait_for(lambda: len(labels._CACHE) == 1, timeout=5)  # the pause
    finally:
        site.begin_stop()
        site.stop()
        site.close()


def test_a_scan_that_packs_an_order_answers_after_its_label_went_to_the_printer(tmp_path):
    """The label first: on one core the page's answer and the label ran side by side and the label
    waited for the answer's share of the core; the scan now returns once the print worker looked."""
    site = Site(edge_config(tmp_path), with_link=False)
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [MUG]})
        inbox.apply_pick_task(site.conn, pick_task("a1", [(MUG, 1)]))
    deliver_label(site.conn, "o-a1")
    site.start()
    try:
        assert wait_for(lambda: site.printing._running)
        assert site.scan("pack-1", MUG["barcode"]).kind == "done"
        assert site.row("SELECT state FROM print_jobs WHERE order_id = 'o-a1'")["state"] == "done"
        assert len(site.printer.printed) == 1
    finally:
        site.begin_stop()
        site.stop()
        site.close()


def test_a_scan_does_not_wait_for_a_print_worker_that_is_not_running(tmp_path):
    site = Site(edge_config(tmp_path), with_link=False)
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [MUG]})
        inbox.apply_pick_task(site.conn, pick_task("a1", [(MUG, 1)]))
    deliver_label(site.conn, "o-a1")
    try:
        import time

        t0 = time.monotonic()
        assert site.scan("pack-1", MUG["barcode"]).kind == "done"
        assert time.monotonic() - t0 < 0.4  # LABEL_FIRST_S is 0.5
    finally:
        site.close()


def test_the_next_orders_label_is_rendered_right_after_a_print_while_packers_scan(tmp_path):
    """Packing without pauses the labels-ahead worker never got its pause (QUIET_S); right after a label
    printed it now renders the label of the next order to pack (earliest deadline) without waiting for
    one, so that order's scan only sends it."""
    site = Site(edge_config(tmp_path), with_link=False)
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [MUG, BAG]})
        inbox.apply_pick_task(site.conn, pick_task("a1", [(MUG, 1)], deadline="2026-11-27T08:00:00Z"))
        inbox.apply_pick_task(site.conn, pick_task("a2", [(BAG, 1)], deadline="2026-11-27T09:00:00Z"))
        inbox.apply_pick_task(site.conn, pick_task("a3", [(BAG, 1)], deadline="2026-11-27T10:00:00Z"))
    for order in ("o-a1", "o-a2", "o-a3"):
        deliver_label(site.conn, order)
    labels.clear_cache()
    site.printing.active()  # the packer scans away: no pause for the labels-ahead worker
    scanning = threading.Event()

    def keep_scanning() -> None:  # scans come every 50 ms (a test thread slowed by a busy box made a pause)
        while not scanning.wait(0.05):
            site.printing.active()
    packer = threading.Thread(target=keep_scanning, daemon=True)
    packer.start()
    site.start()
    try:
        assert wait_for(lambda: site.printing._running)
        assert site.scan("pack-1", MUG["barcode"]).kind == "done"
        # a1's label (rendered on the scan's path) and a2's (the next one), not a3's: no pause came
        assert wait_for(lambda: len(labels._CACHE) == 2, timeout=5)
        time.sleep(0.5)
        assert len(labels._CACHE) == 2
    finally:
        scanning.set()
        packer.join()
        site.begin_stop()
        site.stop()
        site.close()


def test_the_labels_ahead_are_listed_from_a_covering_index(tmp_path):
    """The list of labels to render ahead (read after every print) never reads a label's bytes: they lie
    before received_at in the row, and reading them took 12-30 ms a look for 1,000 orders."""
    conn = make_conn(tmp_path / "site.sqlite")
    plan = " ".join(str(tuple(r)) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT l.order_id, l.format, l.rowid, l.received_at FROM tasks t JOIN labels l "
        "INDEXED BY labels_version ON l.order_id = t.order_id WHERE l.order_id NOT IN "
        "(SELECT order_id FROM print_jobs WHERE kind = 'label')"))
    assert "COVERING INDEX labels_version" in plan and "COVERING INDEX print_jobs_kind_order" in plan
