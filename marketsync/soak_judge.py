"""The soak's judge: what a fault run left behind, read from outside the processes only.

`gather` reads the evidence: each sandbox's own state (`GET /_sandbox/state`: the orders placed on the
marketplace, their status and recorded moves, the stock it shows per card and warehouse), the cloud's
and the site's SQLite files opened read-only (orders, the stock ledger, 1C's balances, `stock_published`,
the link's outbox, dead letters and gaps), and the label files the virtual printer wrote, decoded back
to the order they belong to. `judge(evidence)` is a plain function of that evidence (unit-tested on
crafted inputs) returning the counts of the soak's summary and one line per defect, with ids:

- lost: placed on a marketplace and never reached the cloud; or handed to the courier at the site and
  never shipped on its marketplace; or a shipped order's units never picked off the shelf; or a site's
  stock move missing from the cloud's ledger; or a link
  message that vanished (dead letters differ from the malformed messages injected).
- duplicated: a marketplace move recorded twice for one order, an order in two supplies, two pick tasks
  for one order at the site (a task cancelled and issued again after a unit was not found is one), an
  order's stock move applied twice in the cloud's ledger, or the ledger below 1C's balance with every move
  the site made since (picks, units written off, returns back on the shelf, defective returns kept apart
  in "<warehouse>:defect"); a return's moves ("<order>#<return>") count for its order.
- An order the marketplace took from the seller is shipped whatever became of it afterwards (delivered,
  cancelled on its way, not accepted, returned: the sandbox drew its fate at the hand-over).
- stuck: reached the cloud, not final (shipped or cancelled) on its marketplace and still at the site;
  messages left in an outbox; gaps the link still shows. An order the cloud holds as short of stock (the
  buyer took more than the ledger had: the seller decides) is told, not counted; a ledger that ran short
  because of a defect shows in the ledger's own check.
- mislisted: a card × warehouse whose stock for sale on the marketplace (Ozon: present less reserved) differs
  from the cloud's `stock_published`.
- labels_twice: an order whose label was decoded from more than one printed file, a parcel handed over
  with no printed label or before its label printed, and half-written `.part` files.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_sync import db

KEYS = ("orders", "lost", "duplicated", "stuck", "mislisted", "labels_twice", "faults")


@dataclass
class Evidence:
    """Everything the judge looks at; order keys are "account:native id" as the cloud names them."""

    placed: dict[str, str] = field(default_factory=dict)  # order -> its status on the marketplace
    went_out: set[str] = field(default_factory=set)  # orders the marketplace took from the seller (shipped)
    marketplace_of: dict[str, str] = field(default_factory=dict)  # order -> marketplace
    moves: dict[str, list[str]] = field(default_factory=dict)  # order -> the marketplace's recorded moves
    supplies: dict[str, list[str]] = field(default_factory=dict)  # supply -> orders in it (per-supply models)
    in_cloud: set[str] = field(default_factory=set)  # orders the cloud knows
    short: set[str] = field(default_factory=set)  # orders the cloud holds for want of stock (the seller decides)
    # order -> (item, wh) -> units it holds: as its marketplace holds it (sandbox `order_units`), else the cloud's lines
    units: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    site_tasks: dict[str, int] = field(default_factory=dict)  # order -> pick tasks the site has for it
    handed_over: dict[str, float] = field(default_factory=dict)  # order -> when the site scanned it out
    site_moved: dict[str, dict[str, int]] = field(default_factory=dict)  # order -> item -> site's net delta
    picked: dict[str, dict[str, int]] = field(default_factory=dict)  # order -> item -> units picked off the shelf
    shelf: dict[tuple[str, str], int] = field(default_factory=dict)  # (item, wh) -> the site's net moves
    cloud_moved: dict[str, dict[str, int]] = field(default_factory=dict)  # order -> item -> ledger's delta
    site_warehouse: str = ""
    labels: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # order -> [(file, mtime)]
    part_files: list[str] = field(default_factory=list)
    onec: dict[tuple[str, str], int] = field(default_factory=dict)  # (item, wh) -> 1C's balance
    on_hand: dict[tuple[str, str], int] = field(default_factory=dict)  # (item, wh) -> the cloud's ledger
    published: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (account, card, wh) -> qty
    shown: dict[tuple[str, str, str], int | None] = field(default_factory=dict)  # same keys: the marketplace
    outbox: dict[str, int] = field(default_factory=dict)  # "cloud"/"site" -> messages not acknowledged
    dead_letters: dict[str, int] = field(default_factory=dict)  # side -> dead letters it keeps
    injected_malformed: dict[str, int] = field(default_factory=dict)  # side -> malformed messages sent to it
    gaps: dict[str, int] = field(default_factory=dict)  # side -> gaps its link status still shows
    faults: int = 0


@dataclass
class Verdict:
    counts: dict[str, int]
    lines: list[str]

    @property
    def clean(self) -> bool:
        return not any(self.counts[k] for k in KEYS if k not in ("orders", "faults"))


# --------------------------------------------------------------------------- the marketplaces' final states


def final_state(marketplace: str, status: str) -> str | None:
    """"shipped", "cancelled" or None (not final yet) for an order's status as its sandbox shows it."""
    s = status or ""
    if marketplace == "wildberries":
        return {"complete": "shipped", "cancel": "cancelled", "reject": "cancelled"}.get(s)
    if marketplace == "ozon":
        if s in ("delivering", "driver_pickup", "delivered", "sent_by_seller"):
            return "shipped"
        return "cancelled" if s == "cancelled" else None
    if marketplace == "yandex_market":
        status_, _, sub = s.partition("/")
        if status_ == "CANCELLED":
            return "cancelled"
        if (status_, sub) == ("PROCESSING", "SHIPPED") or status_ in ("DELIVERY", "PICKUP", "DELIVERED"):
            return "shipped"
        return None
    if marketplace == "megamarket":
        if s.endswith("CANCELED"):
            return "cancelled"
        return "shipped" if s in ("SHIPPED", "DELIVERED") else None
    return None


def order_finals(marketplace: str, state: dict[str, Any]) -> dict[str, str | None]:
    """Each order of a sandbox's state as "shipped", "cancelled" or None (not final yet). An order the
    marketplace took from the seller is shipped whatever became of it afterwards — delivered, cancelled on
    its way, not accepted at the sorting centre, returned by the buyer (`after_handover.fates` lists every
    order whose fate was drawn at its hand-over)."""
    went_out = {str(o) for o in (state.get("after_handover") or {}).get("fates", {})}
    return {str(o): "shipped" if str(o) in went_out else final_state(marketplace, str(st))
            for o, st in state.get("orders", {}).items()}


# --------------------------------------------------------------------------- the judge


def judge(ev: Evidence) -> Verdict:
    """The counts of the soak's summary and a line per defect (plain words, with ids)."""
    counts = dict.fromkeys(KEYS, 0)
    counts["orders"], counts["faults"] = len(ev.placed), ev.faults
    lines: list[str] = []

    def defect(key: str, what: str, ids: Iterable[str], n: int | None = None) -> None:
        ids = sorted(ids)
        if not ids:
            return
        counts[key] += len(ids) if n is None else n
        shown = ", ".join(ids[:12]) + (f" … (+{len(ids) - 12})" if len(ids) > 12 else "")
        lines.append(f"{key}: {what}: {len(ids) if n is None else n} — {shown}")

    finals = {o: "shipped" if o in ev.went_out else final_state(ev.marketplace_of.get(o, ""), st)
              for o, st in ev.placed.items()}
    shipped = {o for o, f in finals.items() if f == "shipped"}
    # lost / stuck
    defect("lost", "заказ есть на маркетплейсе, но не дошёл до облака", [o for o in ev.placed if o not in ev.in_cloud])
    left = [o for o in ev.placed if o in ev.in_cloud and finals[o] is None and o in ev.handed_over]
    defect("lost", "посылка передана курьеру, но на маркетплейсе не отгружена",
           [f"{o} ({ev.placed[o]})" for o in left])
    waiting = [o for o in ev.placed if o in ev.in_cloud and finals[o] is None and o not in ev.handed_over]
    defect("stuck", "заказ не дошёл до конечного состояния (отгружен/отменён) и остался на складе",
           [f"{o} ({ev.placed[o]})" for o in waiting if o not in ev.short])
    if short := sorted(o for o in waiting if o in ev.short):  # the buyer took more than there was: not a fault
        lines.append(f"к сведению: не хватило товара, заказ ждёт решения продавца: {len(short)} — {', '.join(short)}")
    # duplicated: marketplace moves and supplies, site tasks
    defect("duplicated", "действие на маркетплейсе выполнено дважды (повтор в истории заказа)",
           [f"{o} ({', '.join(m for m, c in Counter(mv).items() if c > 1)})"
            for o, mv in ev.moves.items() if len(set(mv)) < len(mv)])
    supplies_of: dict[str, list[str]] = {}
    for supply, orders in ev.supplies.items():
        for o in orders:
            supplies_of.setdefault(o, []).append(supply)
    defect("duplicated", "заказ в нескольких поставках",
           [f"{o} ({', '.join(s)})" for o, s in supplies_of.items() if len(s) > 1])
    defect("duplicated", "на складе несколько сборочных заданий на один заказ",
           [f"{o} ({n})" for o, n in ev.site_tasks.items() if n > 1])
    # the ledger: each order's moves as the site made them, and the balance 1C − sold
    twice, missing = [], []
    for o in sorted(set(ev.site_moved) | set(ev.cloud_moved)):
        site, cloud = ev.site_moved.get(o, {}), ev.cloud_moved.get(o, {})
        for item in sorted(set(site) | set(cloud)):
            s, c = site.get(item, 0), cloud.get(item, 0)
            if c != s:
                (twice if abs(c) > abs(s) else missing).append(f"{o} {item}: склад {s:+d}, облако {c:+d}")
    defect("duplicated", "движение остатка по заказу применено в облаке лишний раз", twice)
    defect("lost", "движение остатка со склада не дошло до облака", missing)
    # each shipped order's units left the shelf at the site (its picks, whatever was written off on the way)
    defect("lost", "отгруженный заказ не снят с полки на складе",
           [f"{o} {item}: отгружено {n}, снято {ev.picked.get(o, {}).get(item, 0)}"
            for o in sorted(shipped) for (item, wh), n in ev.units.get(o, {}).items()
            if wh == ev.site_warehouse and o in ev.handed_over and ev.picked.get(o, {}).get(item, 0) != n])
    # the ledger = 1C's balance and every move the site made since: picks of what was sold, units written
    # off (not found), returns back on the shelf, defective returns kept apart ("<warehouse>:defect")
    expected: dict[tuple[str, str], int] = dict(ev.onec)
    for key, d in ev.shelf.items():
        expected[key] = expected.get(key, 0) + d
    below, above = [], []
    for key in sorted(set(expected) | set(ev.on_hand)):
        want, have = expected.get(key, 0), ev.on_hand.get(key, 0)
        if have != want:
            (below if have < want else above).append(f"{key[0]}@{key[1]}: учёт {have}, 1С с движениями склада {want}")
    defect("duplicated", "остаток в учёте меньше, чем 1С с движениями склада", below)
    defect("lost", "остаток в учёте больше, чем 1С с движениями склада", above)
    # mislisted
    defect("mislisted", "маркетплейс показывает не то, что опубликовано",
           [f"{a}/{card}@{wh}: показано {ev.shown.get((a, card, wh))}, опубликовано {q}"
            for (a, card, wh), q in ev.published.items() if ev.shown.get((a, card, wh)) != q])
    # labels
    defect("labels_twice", "этикетка заказа напечатана больше одного раза",
           [f"{o} ({len(files)}: {', '.join(Path(f).name for f, _ in files)})"
            for o, files in ev.labels.items() if len(files) > 1])
    defect("labels_twice", "посылка передана курьеру без напечатанной этикетки",
           [o for o in ev.handed_over if not ev.labels.get(o)])
    early = []
    for o, at in ev.handed_over.items():
        files = ev.labels.get(o)
        if files and at < min(t for _, t in files):
            early.append(f"{o} (на {min(t for _, t in files) - at:.1f} с раньше)")
    defect("labels_twice", "посылка передана курьеру раньше, чем напечаталась её этикетка", early)
    defect("labels_twice", "недописанные файлы .part в папке этикеток", [Path(p).name for p in ev.part_files])
    # the link
    for side in ("cloud", "site"):
        if ev.outbox.get(side, 0):
            defect("stuck", f"сообщения ждут подтверждения в исходящей очереди ({side})", [side],
                   n=ev.outbox[side])
        if ev.gaps.get(side, 0):
            defect("stuck", f"канал всё ещё показывает пропуски ({side})", [side], n=ev.gaps[side])
        dead, sent = ev.dead_letters.get(side, 0), ev.injected_malformed.get(side, 0)
        if dead != sent:
            defect("lost", f"мёртвых писем {dead}, а испорченных сообщений отправлено {sent} ({side})", [side],
                   n=abs(dead - sent))
    return Verdict(counts, lines)


# --------------------------------------------------------------------------- gathering, from outside


def _ro(path: Path) -> sqlite3.Connection:
    """A database read-only: the site's SQLite file `mode=ro`, the cloud's store SQLite or PostgreSQL."""
    return db.connect_readonly(path, timeout=30)


def sandbox_state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.rstrip("/") + "/_sandbox/state", timeout=30) as resp:
        return json.loads(resp.read())


def _moves_of(marketplace: str, state: dict[str, Any]) -> dict[str, list[str]]:
    if marketplace in ("wildberries", "ozon"):
        return {k: list(v) for k, v in state.get("transitions", {}).items()}
    return {k: list(v) for k, v in state.get("order_moves", {}).items()}


def gather(*, sandboxes: dict[str, str], accounts: dict[str, str], cloud_db: Path, site_db: Path,
           labels_dir: Path, injected_malformed: dict[str, int], faults: int,
           decode: Any = None) -> Evidence:
    """Read the evidence. `sandboxes`: account -> its sandbox's URL (each account has a sandbox of its own:
    two cabinets of one marketplace are two sandboxes); `accounts`: account -> its marketplace;
    `decode(path) -> [texts]` reads a label file (default: the edge's decoder)."""
    ev = Evidence(injected_malformed=dict(injected_malformed), faults=faults)
    shown_by_account: dict[str, dict[str, int]] = {}
    mp_units: dict[str, dict[str, int]] = {}  # order -> offer -> units, as the marketplace holds the order
    for account, url in sandboxes.items():
        mp = accounts[account]
        state = sandbox_state(url)
        for native, status in state.get("orders", {}).items():
            key = f"{account}:{native}"
            ev.placed[key] = str(status)
            ev.marketplace_of[key] = mp
        ev.went_out |= {f"{account}:{o}" for o in (state.get("after_handover") or {}).get("fates", {})}
        for native, mv in _moves_of(mp, state).items():
            ev.moves[f"{account}:{native}"] = mv
        for sid, s in (state.get("supplies") or {}).items():
            ev.supplies[f"{account}:{sid}"] = [f"{account}:{o}" for o in s.get("orders", [])]
        held = {str(k): int(v) for k, v in (state.get("reserved") or {}).items()}  # Ozon: present − reserved
        shown_by_account[account] = {str(k): int(v) - held.get(str(k), 0) for k, v in state.get("stocks", {}).items()}
        for native, units in (state.get("order_units") or {}).items():  # what the buyer gets, per offer
            mp_units[f"{account}:{native}"] = {str(k): int(v) for k, v in units.items()}
    with closing(_ro(cloud_db)) as conn:
        for r in conn.execute("SELECT key, stage, EXISTS (SELECT 1 FROM order_actions a WHERE a.order_id = o.id AND"
                              " a.action = 'reduce' AND a.state = 'failed') AS held FROM orders o"):
            ev.in_cloud.add(r["key"])
            if r["stage"] == "short" or r["held"]:  # held: packed short, its marketplace would not take the units out
                ev.short.add(r["key"])
        for r in conn.execute("SELECT o.key, o.warehouse, l.item_id, SUM(l.units) AS n FROM order_lines l "
                              "JOIN orders o ON o.id = l.order_id WHERE l.item_id IS NOT NULL "
                              "GROUP BY o.key, o.warehouse, l.item_id"):
            ev.units.setdefault(r["key"], {})[(r["item_id"], r["warehouse"])] = int(r["n"])
        # a shipped order's units as its marketplace holds them (a parcel packed short was reduced there):
        # offers to items by the cloud's card links; the cloud's own lines where the sandbox does not say
        items_of: dict[tuple[str, str], tuple[str, int]] = {}
        for r in conn.execute("SELECT c.account, c.offer_id, l.item_id, l.pack_size FROM cards c JOIN card_links l"
                              " ON l.account = c.account AND l.card_id = c.native_id WHERE l.item_id IS NOT NULL"):
            items_of[(r["account"], str(r["offer_id"]))] = (r["item_id"], int(r["pack_size"] or 1))
        warehouse_of = {r["key"]: r["warehouse"] for r in conn.execute("SELECT key, warehouse FROM orders")}
        for key, offers in mp_units.items():
            if key not in warehouse_of:
                continue
            account, held = key.partition(":")[0], {}
            for offer, n in offers.items():
                item, pack = items_of.get((account, offer), (None, 1))
                if item is None:
                    break
                wh = (item, warehouse_of[key])
                held[wh] = held.get(wh, 0) + n * pack
            else:
                ev.units[key] = held
        for r in conn.execute("SELECT ref, item_id, on_hand_delta AS d FROM stock_moves "
                              "WHERE source LIKE 'site:%' AND ref != '' AND on_hand_delta != 0"):
            _add(ev.cloud_moved, order_ref(r["ref"]), r["item_id"], int(r["d"]))
        for r in conn.execute("SELECT item_id, warehouse_id, quantity FROM onec_balances"):
            ev.onec[(r["item_id"], r["warehouse_id"])] = int(float(r["quantity"]))
        for r in conn.execute("SELECT item_id, warehouse, on_hand FROM stock_levels"):
            ev.on_hand[(r["item_id"], r["warehouse"])] = int(r["on_hand"])
        for r in conn.execute("SELECT account, card_id, warehouse_id, quantity FROM stock_published"):
            key = (r["account"], r["card_id"], r["warehouse_id"])
            ev.published[key] = int(r["quantity"])
            shown = shown_by_account.get(r["account"], {})
            ev.shown[key] = shown.get(f"{r['card_id']}@{r['warehouse_id']}", shown.get(r["card_id"]))
        _link(conn, "cloud", ev)
    label_texts: dict[str, str] = {}
    with closing(_ro(site_db)) as conn:
        for r in conn.execute("SELECT order_id, COUNT(*) AS n FROM tasks WHERE state != 'cancelled' "
                              "GROUP BY order_id"):  # a task cancelled and issued again (a unit not found) is one
            ev.site_tasks[r["order_id"]] = int(r["n"])
        for r in conn.execute("SELECT order_id, MIN(ts) AS ts FROM handover_scans GROUP BY order_id"):
            ev.handed_over[r["order_id"]] = float(r["ts"])
        for r in conn.execute("SELECT DISTINCT warehouse FROM tasks WHERE warehouse IS NOT NULL LIMIT 1"):
            ev.site_warehouse = r["warehouse"]
        if not ev.site_warehouse and ev.onec:
            ev.site_warehouse = next(iter(ev.onec))[1]
        for r in conn.execute("SELECT ref, item_id, delta, reason FROM stock_moves WHERE delta != 0"):
            d, wh = int(r["delta"]), ev.site_warehouse
            key = (r["item_id"], f"{wh}:defect" if r["reason"] == "defect" else wh)
            ev.shelf[key] = ev.shelf.get(key, 0) + d
            if r["ref"]:
                _add(ev.site_moved, order_ref(r["ref"]), r["item_id"], d)
                if r["reason"] == "pick":
                    _add(ev.picked, order_ref(r["ref"]), r["item_id"], -d)
        for r in conn.execute("SELECT order_id, barcode_text FROM labels WHERE barcode_text IS NOT NULL"):
            label_texts[r["barcode_text"]] = r["order_id"]
        _link(conn, "site", ev)
    for moved in (ev.site_moved, ev.cloud_moved):  # an order whose moves net to nothing has no line
        for o in list(moved):
            moved[o] = {item: d for item, d in moved[o].items() if d}
            if not moved[o]:
                del moved[o]
    ev.labels, ev.part_files = read_labels(labels_dir, label_texts, ev.placed, decode)
    return ev


def order_ref(ref: str) -> str:
    """The order a stock move's reference names: a return's moves carry "<order>#<return>"."""
    return ref.partition("#")[0]


def _add(table: dict[str, dict[str, int]], order: str, item: str, d: int) -> None:
    row = table.setdefault(order, {})
    row[item] = row.get(item, 0) + d


def _link(conn: sqlite3.Connection, side: str, ev: Evidence, looks: int = 6) -> None:
    """The link's tables on one side. The outbox is looked at a few times a second apart and its
    smallest depth kept: a message just sent is acknowledged within moments, a stuck one stays."""
    depths = []
    for i in range(looks):
        if i:
            time.sleep(1.0)
        depths.append(conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0])
        if not depths[-1]:
            break
    ev.outbox[side] = min(depths)
    ev.dead_letters[side] = conn.execute("SELECT COUNT(*) FROM link_dead_letters").fetchone()[0]
    ev.gaps[side] = conn.execute("SELECT COUNT(*) FROM link_gaps").fetchone()[0]


def order_of_label(texts: list[str], label_texts: dict[str, str], natives: dict[str, str]) -> str | None:
    """The order a decoded label belongs to: its barcode as the site received it with the label, else a
    marketplace id inside the barcode (`5001234*9300000000001*1` holds shipment 9300000000001)."""
    for text in texts:
        if text in label_texts:
            return label_texts[text]
        for token in [text, *text.split("*")]:
            if token in natives:
                return natives[token]
    return None


def read_labels(labels_dir: Path, label_texts: dict[str, str], placed: Iterable[str],
                decode: Any = None) -> tuple[dict[str, list[tuple[str, float]]], list[str]]:
    """Decode every printed file; files that decode to no order (hand-over acts, supply QR codes) are
    not labels. Returns order -> [(file, mtime)] and the `.part` files left behind."""
    if decode is None:
        from edge_agent.decode import decode_file  # lazy: OpenCV and zxing load only when judging

        def decode(path: str) -> list[str]:
            return [s["text"] for s in decode_file(path).get("symbols", [])]

    natives: dict[str, str] = {}
    for key in placed:
        natives.setdefault(key.partition(":")[2], key)
    labels: dict[str, list[tuple[str, float]]] = {}
    parts: list[str] = []
    if not labels_dir.exists():
        return labels, parts
    for path in sorted(labels_dir.iterdir()):
        if path.name.endswith(".part"):
            parts.append(str(path))
            continue
        if not path.is_file():
            continue
        order = order_of_label(decode(str(path)), label_texts, natives)
        if order is not None:
            labels.setdefault(order, []).append((str(path), path.stat().st_mtime))
    return labels, parts


def summary_line(v: Verdict) -> str:
    return json.dumps({k: v.counts[k] for k in KEYS})
