"""The demo's simulated packer: it works a warehouse site the way a packer does, so `marketsync demo`
packs, labels and hands over its orders with nobody at the box.

A site plugin (the edge starts it when its edge.toml says `[tasks] auto_pack = true`, see
`edge_agent.config.AUTO_PACKER`): `attach(site)` listens for new pick tasks and couriers' hand-overs
and, at the station `auto_pack_station`, opens each task and scans every unit with a virtual scanner
(marked goods get a made-up Честный знак code — or, where the site checks codes against Честный знак,
a code printed on the goods: one the register's sandbox holds in circulation, after scanning once a
unit whose code was already sold, which the site refuses), then scans every parcel of a hand-over and
closes it, and takes each returned parcel in on the «Возврат» screen (its units good, one return in
DEFECT_EVERY with a defective unit). Every WAVE_EVERY-th task (once the day's shortage is behind) it
gathers the new orders for a combined pick («Общая сборка»): it walks the list scanning each bin's label,
then sorts the units into their totes at the packing table (`picked_by_bin` counts those orders). Like a packer, it hands a parcel over only once its label has
printed: a hand-over with parcels still waiting for their label (or still being packed) is taken up
again `LABEL_RECHECK_S` later, other work going on meanwhile; it is closed when every parcel that can go
went (the rest listed as missing). It ships with the demo, never with the edge; the edge offers it only
its ordinary hooks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from edge_agent import store
from edge_agent.devices.scanners import open_scanner
from edge_agent.site import Site
from edge_agent.tasks import handover, pack, pick, returns, station, wave
from edge_agent.tasks.common import TaskError
from edge_agent.tasks.marking import GS, MarkingError, gtin_of_barcode, parse

log = logging.getLogger("marketsync.edge")
LABEL_RECHECK_S = 1.0  # how soon a hand-over whose parcels wait for their labels is looked at again
DEFECT_EVERY = 4  # one returned parcel in this many has a defective unit
WAVE_EVERY = 4  # every this many tasks the packer gathers the new orders for a combined pick by bin
WAVE_GATHER_S = 6.0  # how long it waits for a second new order before packing the one it has alone


def attach(site: Site) -> DemoPacker:
    """The site plugin entry: a packer at `auto_pack_station`, with its virtual scanner when the site
    has devices (without them, it scans straight into the site)."""
    packer = DemoPacker(site, site.cfg.auto_pack_station, site.cfg.auto_pack_delay_s)
    site.listen("new_task", packer.task_arrived)
    site.listen("handover", packer.courier_came)
    site.listen("return", packer.parcel_came_back)
    if site.with_devices:
        packer.scanner = open_scanner({"kind": "virtual", "station": packer.station})
        site.add_scanner(packer.scanner)
    return packer


class MarkedGoods:
    """The Честный знак codes printed on the demo warehouse's marked goods: read from the register's sandbox
    (`/_sandbox/x/codes`), more printed there (`/_sandbox/x/add`) when a GTIN runs out. The first marked
    unit packed is one whose code was already sold, to show the site refusing it."""

    def __init__(self, url: str, used: Callable[[], set[str]] | None = None) -> None:
        """`used()`: the codes (GTIN + serial) the site has already packed — after a restart of the box the
        register still lists them in circulation (they are sold only when the parcel is), and a packer
        takes the next unit off the shelf, not one already in a parcel."""
        self.url = url.rstrip("/")
        self.used = used or set
        self.fresh: dict[str, list[str]] = {}
        self.show_refusal = True
        self.loaded = False

    def _call(self, name: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(f"{self.url}/_sandbox/x/{name}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def codes_for_unit(self, gtin: str) -> list[str]:
        """What the packer scans for one unit: a code in circulation (after a sold one, the first time)."""
        if not self.loaded:
            packed = self.used()
            for c in self._call("codes", {})["codes"]:
                if c["kind"] == "in_circulation" and code_id(c["code"]) not in packed:
                    self.fresh.setdefault(c["gtin"], []).append(c["code"])
            self.loaded = True
        pool = self.fresh.setdefault(gtin, [])
        if not pool:
            pool.append(self._call("add", {"gtin": gtin, "status": "INTRODUCED"})["code"])
        scans = []
        if self.show_refusal:  # a unit of this item whose code was sold already: the site must refuse it
            scans.append(self._call("add", {"gtin": gtin, "status": "RETIRED"})["code"])
            self.show_refusal = False
        return [*scans, pool.pop(0)]


def code_id(code: str) -> str:
    """A code's identity as the site keeps it (GTIN + serial); '' for a code it cannot read."""
    try:
        c = parse(code)
    except MarkingError:
        return ""
    return c.code_id


def store_note(conn: Any, key: str, value: int) -> None:
    """A figure of the demo kept in the site's own file, for the demo's summary line to read."""
    conn.execute("INSERT OR REPLACE INTO site_meta (key, value) VALUES (?, ?)", (key, str(value)))


def demo_code(gtin: str, serial: str) -> str:
    """A structurally valid Честный знак code for the simulated packer (the crypto tail is filler)."""
    filler = (serial * 44)[:44].replace(GS, "A")
    return f"01{gtin}21{serial}{GS}91EE10{GS}92{filler}"


def unit_serial(task_id: str, line_no: int, unit: int) -> str:
    """A 13-character serial for one unit of one task line, unique across tasks of every marketplace (the
    end of a task id is not: wb 5000000034 and mm 9300000000034 end alike)."""
    return f"{hashlib.sha1(task_id.encode()).hexdigest()[:8]}{line_no:02d}{unit:03d}"


class DemoPacker:
    """One simulated packer at one station: works through its queue of tasks and hand-overs in order."""

    def __init__(self, site: Site, station: str, delay_s: float) -> None:
        self.site = site
        self.station = station
        self.delay_s = delay_s
        register = site.cfg.chestny_znak.url
        self.marked_goods = MarkedGoods(register, self.packed_codes) if register else None
        self.scanner: Any = None
        self._work: queue.Queue[str | tuple[str, str]] = queue.Queue()
        self.tasks_seen = 0
        self.picked_by_bin = 0  # orders picked in a combined pick list, walked by bin
        self.packed_short = False  # once a day a parcel goes with one unit fewer (the marketplace is told)

    def packed_codes(self) -> set[str]:
        return {r["code_id"] for r in self.site.rows("SELECT code_id FROM marking_codes")}

    # -- the plugin's life -----------------------------------------------------------------------

    def start(self) -> None:
        """Start working, beginning with the tasks the site already has (oldest first)."""
        self.site.spawn(self._run, "auto-pack")
        for t in self.site.rows("SELECT task_id FROM tasks WHERE state IN ('new','picking','picked','packing') "
                                "ORDER BY created_at"):
            self._work.put(t["task_id"])
        for h in self.site.rows("SELECT handover_id FROM handovers WHERE state='open' ORDER BY created_at"):
            self._work.put(("handover", h["handover_id"]))  # a courier who came before a restart still waits
        for r in self.site.rows("SELECT return_id FROM returns WHERE state != 'received' ORDER BY created_at"):
            self._work.put(("return", r["return_id"]))

    def stop(self) -> None:
        self._work.put("")

    # -- what the site tells it ------------------------------------------------------------------

    def task_arrived(self, task_id: str) -> None:
        self._work.put(task_id)

    def courier_came(self, handover_id: str) -> None:
        self._work.put(("handover", handover_id))

    def parcel_came_back(self, return_id: str) -> None:
        self._work.put(("return", return_id))

    def _run(self) -> None:
        while not self.site.stopping:
            work = self._work.get()
            if not work or self.site.stopping:
                return
            try:
                if isinstance(work, tuple) and work[0] == "return":
                    self.take_return(work[1])
                elif isinstance(work, tuple):
                    self.hand_over(work[1])
                else:
                    self.pack(work)
            except Exception:
                log.exception("auto-pack of %s", work)

    # -- the packer's work -----------------------------------------------------------------------

    def pack(self, task_id: str) -> None:
        """Scan every unit of a task with the virtual scanner, the way a packer would."""
        st = self.station
        for _ in range(50):  # the handler's transaction may not have committed yet
            t = self.site.row("SELECT state FROM tasks WHERE task_id = ?", task_id)
            if t is not None:
                break
            time.sleep(0.05)
        else:
            return
        self.tasks_seen += 1
        if self.tasks_seen == self.site.cfg.auto_pack_short_at and "#" not in task_id:
            # a packer's day has one: the shelf is empty for the first line — the cloud writes the unit off
            # and serves the order again from other stock (or it waits for stock, visibly)
            try:
                self.site.act(pick.report_short, self.site.send, task_id, 1)
                log.info("demo packer: nothing on the shelf for task %s, reported short", task_id)
            except TaskError:
                pass
            t = self.site.row("SELECT state FROM tasks WHERE task_id = ?", task_id)
            if t is None or t["state"] not in pack.OPEN_FOR_PACK:
                return  # nothing of it found: the cloud serves the order again (or it waits for stock)
            # its other lines are there: the parcel is packed without the first (the marketplace is told)
        elif self.tasks_seen > self.site.cfg.auto_pack_short_at and self.tasks_seen % WAVE_EVERY == 0 \
                and self.pick_wave(task_id):
            return
        with store.transaction(self.site.conn):
            try:
                station.open_task(self.site.conn, st, task_id, "pack")
            except TaskError:
                return
        lines = self.site.rows("SELECT * FROM task_lines WHERE task_id = ? ORDER BY line_no", task_id)
        # the first parcel of several lines after the empty shelf: its last unit is not there either, found at
        # the packing table — the parcel goes with the rest and the marketplace is told what it holds
        short_one = (not self.packed_short and 0 < self.site.cfg.auto_pack_short_at < self.tasks_seen
                     and "#" not in task_id and len(lines) >= 2)
        self._pack_units(task_id, but_last=short_one)
        if short_one:
            self._pack_short(task_id, lines[-1]["line_no"], sum(ln["quantity"] for ln in lines) - 1)

    def _pack_units(self, task_id: str, but_last: bool = False) -> None:
        """Scan every unit of the task still to pack (its marked goods by their codes); `but_last`: all but
        the last unit of its last line (that one is not there)."""
        lines = self.site.rows("SELECT * FROM task_lines WHERE task_id = ? ORDER BY line_no", task_id)
        for ln in lines:
            barcode = ln["barcode"] or ""
            last = but_last and ln["line_no"] == lines[-1]["line_no"]
            for unit in range(ln["packed"], ln["quantity"] - ln["short"] - int(last)):
                if self.site.stopping:
                    return
                texts = [barcode]
                if ln["marking_required"]:
                    gtin = gtin_of_barcode(barcode) or "0" * 14
                    texts = [demo_code(gtin, unit_serial(task_id, ln["line_no"], unit))]
                    if self.marked_goods is not None:
                        try:
                            texts = self.marked_goods.codes_for_unit(gtin)
                        except OSError as exc:  # the register's sandbox is gone: a made-up code, checked later
                            log.warning("demo packer: no code from the register (%s)", exc)
                for text in texts:
                    self._scan(text)
                    time.sleep(self.delay_s)

    def _pack_short(self, task_id: str, line_no: int, packed: int) -> None:
        """Once the other units are in the parcel (the scans are applied by the page's thread), the last one
        is reported missing at the packing table."""
        for _ in range(200):
            row = self.site.row("SELECT SUM(packed) AS n FROM task_lines WHERE task_id = ?", task_id)
            if row is not None and (row["n"] or 0) >= packed:
                break
            time.sleep(0.05)
        else:
            return
        try:
            self.site.act(pack.report_short, self.site.send, task_id, line_no, self.site.cfg.warehouse)
            self.packed_short = True
            log.info("demo packer: the last unit of task %s is not there; the parcel goes without it", task_id)
        except TaskError as exc:
            log.info("demo packer: no short at the packing table for %s (%s)", task_id, exc)

    def pick_wave(self, task_id: str) -> bool:
        """«Общая сборка»: wait a little for more new orders, then pick them all in one walk (each bin's
        label scanned once), and sort the units into their totes at the packing table. False when the
        task is no longer new or no second order came."""
        conn, st = self.site.conn, self.station
        deadline = time.monotonic() + WAVE_GATHER_S
        while True:
            t = self.site.row("SELECT state FROM tasks WHERE task_id = ?", task_id)
            if t is None or t["state"] != "new":
                return False
            with store.locked():
                waiting = wave.candidates(conn, self.site.cfg.wave_max_orders)
            if len(waiting) >= 2 and task_id in waiting:
                break
            if time.monotonic() > deadline or self.site.stopping:
                return False
            time.sleep(0.2)
        try:
            wave_id = self.site.act(wave.create, self.site.cfg.wave_max_orders, "демо-упаковщик")
        except TaskError:
            return False
        self.site.act(station.set_mode, st, "wave", wave_id, what="station")
        with store.locked():
            walk = wave.pick_list(conn, wave_id)
        log.info("demo packer: combined pick %s of %d orders along bins %s", wave_id,
                 len(wave.task_ids(conn, wave_id)), ", ".join(g["bin"] for g in walk if g["bin"]))
        for g in walk:  # along the shelves: a bin's label takes its line, goods without a bin one by one
            for text in [g["bin"]] if g["bin"] else [g["barcode"]] * (g["quantity"] - g["short"] - g["picked"]):
                self._scan(text)
                time.sleep(self.delay_s)
        self.site.act(station.set_mode, st, "sort", wave_id, what="station")
        ids = wave.task_ids(conn, wave_id)
        for tid in ids:  # at the packing table, tote by tote
            self._pack_units(tid)
        self.site.act(station.set_mode, st, "pack", what="station")
        with store.locked():
            done = sum(1 for t in wave.totes_of(conn, wave_id) if t["state"] in ("packed", "handed_over"))
        self.picked_by_bin += done
        self.site.act(store_note, "demo_picked_by_bin", self.picked_by_bin, what="station")
        return True

    def hand_over(self, handover_id: str) -> None:
        """Scan every parcel of a hand-over that may go (packed, label printed) at a station in handover
        mode, then close it, the way a packer does when the courier comes. A parcel whose label is not
        out yet, or that is still being packed, is waited for: the hand-over is looked at again later."""
        st = self.station
        for _ in range(50):  # the handler's transaction may not have committed yet
            h = self.site.row("SELECT order_ids, state FROM handovers WHERE handover_id = ?", handover_id)
            if h is not None:
                break
            time.sleep(0.05)
        else:
            return
        if h["state"] != "open":
            return
        self.site.act(station.set_mode, st, "handover", handover_id)
        waiting = False
        for order_id in json.loads(h["order_ids"]):
            if self.site.stopping:
                return
            if order_id in self._summary(handover_id)["scanned"]:
                continue
            ready = self._parcel(order_id)
            if ready == "wait":
                waiting = True
            elif ready == "go":
                self._scan(order_id)
                time.sleep(self.delay_s)
        if waiting:
            self._later(("handover", handover_id), LABEL_RECHECK_S)
            return
        missing = self._summary(handover_id)["missing"]  # never packed here, cancelled, short: they stay
        self.site.act(handover.close, self.site.send, handover_id, bool(missing), what="handover")
        self.site.act(station.set_mode, st, "pack")

    def take_return(self, return_id: str) -> None:
        """On the «Возврат» screen: scan the returned parcel, then each unit in it (one return in
        DEFECT_EVERY has its first unit marked defective), and take it in."""
        for _ in range(50):  # the handler's transaction may not have committed yet
            r = self.site.row("SELECT order_id, lines, state FROM returns WHERE return_id = ?", return_id)
            if r is not None:
                break
            time.sleep(0.05)
        else:
            return
        if r["state"] == "received":
            return
        st = self.station
        self.site.act(station.set_mode, st, "return", what="station")
        # straight into the site, one scan after the other: the return is taken in right after its last unit
        if not self.site.scan(st, r["order_id"]).ok:
            self.site.act(station.set_mode, st, "pack", what="station")
            return
        units = []
        for ln in json.loads(r["lines"]):
            code = ln.get("barcode") or ""
            for _ in range(int(ln["quantity"])):
                res = self.site.scan(st, code)
                if res.ok and res.data.get("unit"):
                    units.append(int(res.data["unit"]))
                time.sleep(self.delay_s)
        if not units:
            self.site.act(returns.put_aside, st, what="return")
        else:
            if int(hashlib.sha1(return_id.encode()).hexdigest(), 16) % DEFECT_EVERY == 0:
                self.site.act(returns.mark, return_id, units[0], True, what="return")
            self.site.act(returns.commit, self.site.send, st, return_id, self.site.cfg.warehouse, "демо-упаковщик",
                          what="return")
        self.site.act(station.set_mode, st, "pack", what="station")

    def _summary(self, handover_id: str) -> dict[str, Any]:
        with store.locked():
            return handover.summary(self.site.conn, handover_id)

    def _parcel(self, order_id: str) -> str:
        """go (packed, label printed) | wait (its label or its packing is on the way) | never."""
        with store.locked():
            refused = handover.check_parcel(self.site.conn, order_id)
        if refused is None:
            return "go"
        if refused.kind == "no_label" or (refused.kind == "not_packed"
                                          and refused.data.get("state") in pack.OPEN_FOR_PACK):
            return "wait"
        return "never"

    def _later(self, work: str | tuple[str, str], delay_s: float) -> None:
        timer = threading.Timer(delay_s, self._work.put, (work,))
        timer.daemon = True
        timer.start()

    def _scan(self, text: str) -> None:
        if self.scanner is not None:
            self.scanner.feed(text)
        else:
            self.site.scan(self.station, text)
