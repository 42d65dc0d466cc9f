"""The site over a real Mosquitto and a real cloud-role SiteLink: the walking skeleton's site part, and
point 8 — offline for days. Only the printer is virtual (it writes PNG files): no physical printer here."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from edge_testkit import BAG, MUG, SHIRT, SOCKS, CloudRecorder, edge_config, label_png, marking, pick_task
from edge_testkit import wait_for as wait_until

from edge_agent.site import Site

wait_for = functools.partial(wait_until, timeout=20.0)  # a site back online takes longer here


def pngs(tmp: Path) -> list[Path]:
    return sorted((tmp / "labels").glob("*.png")) if (tmp / "labels").exists() else []


def test_skeleton_pick_task_is_packed_by_the_virtual_scanner_and_the_label_printed(broker, tmp_path) -> None:
    cloud = CloudRecorder(tmp_path / "cloud.sqlite", broker)
    cloud.link.start()
    site = Site(edge_config(tmp_path, broker, auto_pack=True, auto_pack_delay_s=0.01))
    site.start()
    try:
        cloud.send("catalog", {"items": [MUG, SHIRT]})
        cloud.send("pick_task", pick_task("wb-1", [(MUG, 1), (SHIRT, 1)],
                                          label={"order_id": "o-wb-1", "format": "png", "data_b64": label_png("WB 1")}))
        assert wait_for(lambda: len(pngs(tmp_path)) == 1), "the label was not printed"
        assert wait_for(lambda: {t for _, _, t, _ in cloud.received()} >= {"task_progress", "stock_delta", "printed"})
        got = cloud.received()
        progress = next(b for _, _, t, b in got if t == "task_progress")
        assert progress["state"] == "packed" and len(progress["marking_codes"]) == 1
        deltas = sorted((b["item_id"], b["delta"]) for _, _, t, b in got if t == "stock_delta")
        assert deltas == sorted([(MUG["item_id"], -1), (SHIRT["item_id"], -1)])
        printed = next(b for _, _, t, b in got if t == "printed")
        assert printed["order_id"] == "o-wb-1" and Path(printed["file"]).exists()
        assert [s for _, s, _, _ in got] == sorted(s for _, s, _, _ in got)
    finally:
        site.stop()
        site.close()
        cloud.link.stop()


def test_offline_for_days_50_orders_packed_printed_counted_then_delivered_once_in_order(broker, tmp_path) -> None:
    cloud = CloudRecorder(tmp_path / "cloud.sqlite", broker)
    cloud.link.start()
    items = [MUG, SOCKS, BAG, SHIRT]
    site = Site(edge_config(tmp_path, broker))
    site.start()
    try:
        # Online: the cloud sends the catalog, 50 pick tasks and their labels fetched ahead.
        cloud.send("catalog", {"items": items})
        for i in range(50):
            item = items[i % 4]
            cloud.send("pick_task", pick_task(f"t{i:02d}", [(item, 1 + i % 2)]))
            cloud.send("label", {"order_id": f"o-t{i:02d}", "format": "png", "data_b64": label_png(f"order {i}")})
        assert cloud.link.wait_idle(30)
        assert wait_for(lambda: site.row("SELECT COUNT(*) AS n FROM labels")["n"] == 50)
        assert wait_for(lambda: site.link_status()["online"])
    finally:
        site.stop()
        site.close()

    # The broker goes away for the whole working day.
    before = len(cloud.received())
    broker.stop()
    site = Site(edge_config(tmp_path, broker))
    site.start()
    try:
        for i in range(50):
            task = f"t{i:02d}"
            item = items[i % 4]
            for unit in range(1 + i % 2):
                code = marking(item, f"S{i:02d}U{unit}") if item is SHIRT else item["barcode"]
                res = site.scan("pack-1", code)
                assert res.ok, res.message
            assert res.kind == "done" and res.task_id == task
        site.scan("pack-1", "2999999999999")  # one unknown barcode: a scan of note goes up too
        from edge_agent.tasks import station, stock

        site.act(station.set_mode, "pack-1", "count")
        for code in (MUG["barcode"], MUG["barcode"], BAG["barcode"]):
            assert site.scan("pack-1", code).ok
        site.act(stock.commit_count, site.send, "pack-1", "main", "count-1", "Анна")
        assert wait_for(lambda: len(pngs(tmp_path)) == 50), "labels were not printed offline"
        assert wait_for(lambda: site.row("SELECT COUNT(*) AS n FROM print_jobs WHERE state='done'")["n"] == 50)
        status = site.link_status()
        assert status["online"] is False
        expected = [(r["id"], r["seq"]) for r in site.rows("SELECT id, seq FROM link_outbox ORDER BY seq")]
        # 50 packed + 50..100 deltas + 50 printed + 1 scan + 2 counts
        assert status["queue"] == len(expected) >= 50 * 3 + 3
        assert len(cloud.received()) == before == 0

        # The link returns: everything reaches the cloud exactly once and in order.
        broker.start()
        assert wait_for(lambda: len(cloud.received()) >= len(expected), timeout=40)
        assert site.link.wait_idle(20)
        time.sleep(0.5)  # a duplicate, if the link made one, would arrive now
        got = cloud.received()
        assert [(i, s) for i, s, _, _ in got] == expected  # same messages, same order, each once
        assert len({i for i, _, _, _ in got}) == len(got)
        packed = [b["order_id"] for _, _, t, b in got if t == "task_progress" and b["state"] == "packed"]
        assert packed == [f"o-t{i:02d}" for i in range(50)]
        assert len([1 for _, _, t, _ in got if t == "printed"]) == 50
        counts = {b["item_id"]: b["counted"] for _, _, t, b in got if t == "stock_count"}
        assert counts == {MUG["item_id"]: 2, BAG["item_id"]: 1}
        assert site.link_status() == {"online": True, "queue": 0}
    finally:
        site.stop()
        site.close()
        cloud.link.stop()


def test_over_tls_with_a_password_the_label_that_comes_after_packing_prints(secure_broker, tmp_path) -> None:
    """The cloud fetches the label only once the order is packed (label_after = assemble)."""
    cloud = CloudRecorder(tmp_path / "cloud.sqlite", secure_broker)
    cloud.link.start()
    site = Site(edge_config(tmp_path, secure_broker, auto_pack=True, auto_pack_delay_s=0.01))
    site.start()
    try:
        cloud.send("pick_task", pick_task("oz-1", [(BAG, 2)]))
        assert wait_for(lambda: any(b.get("state") == "packed" for _, _, t, b in cloud.received()
                                    if t == "task_progress"))
        assert pngs(tmp_path) == []  # packed, the label not here yet: the job waits
        cloud.send("label", {"order_id": "o-oz-1", "format": "png", "data_b64": label_png("OZON 1")})
        assert wait_for(lambda: len(pngs(tmp_path)) == 1)
        assert wait_for(lambda: any(t == "printed" for _, _, t, _ in cloud.received()))
    finally:
        site.stop()
        site.close()
        cloud.link.stop()
