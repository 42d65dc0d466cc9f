"""Scheduled price rules: "-10% Friday 18:00, back Monday 09:00", with automatic revert.

Owns the table `price_rules`. A rule is a price document's lines for one account plus a window: a
start and an end, each "WEEKDAY HH:MM" (English or Russian day names, short or long), "daily HH:MM"
or a one-off "YYYY-MM-DD HH:MM", in the rule's time zone (default Europe/Moscow). Times are checked
with the `schedule` library's own parser (`Job.at`), so a rule that `schedule` would refuse is refused
here, with a clear `RuleError`, when it is created - before anything is sent.

The runner is window-based, not edge-triggered: on each tick (`run_due`), a rule that should be in its
window and is not yet applied is applied (the prices it will change are snapshotted first), and a rule
that is applied but outside its window is reverted to that snapshot. A tick missed while the cloud
was down is caught up on the next one; nothing is applied twice.

A rule's percent is taken from the price list's price before any rule cut it (`regular_prices`: the
snapshot the first active rule took), never from a price another rule already cut, so a -10% rule is
10% off whatever else runs. A rule that needs a person's confirmation (a large drop, quarantine, below
cost) leaves one held document (`held`), confirmed (`confirm_held`) or discarded (`discard_held`) from
the rule's page; it is discarded by itself when the window closes unconfirmed. When a rule ends, each
card goes back to the price of another rule still active on it, or else to its regular price.
`overlaps` says which other rules change the same cards at the same time. The cloud's jobs loop calls
`run_due(conn, adapter_for, now=...)` (or `install(scheduler, ...)` on a `schedule.Scheduler`);
tests pass their own `now`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import schedule

from cloud_sync.alerts import outbox
from cloud_sync.db import transaction
from cloud_sync.money import price_apply, price_docs, price_preview
from cloud_sync.money.price_list import Price, as_decimal, current_prices
from marketplaces.base import Marketplace

MIGRATIONS = [
    """
    CREATE TABLE price_rules (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        account TEXT NOT NULL,
        lines TEXT NOT NULL,              -- JSON list of price document lines
        start_at TEXT NOT NULL,           -- "friday 18:00", "daily 09:00", "2026-11-27 18:00"
        end_at TEXT NOT NULL,
        tz TEXT NOT NULL DEFAULT 'Europe/Moscow',
        confirmed INTEGER NOT NULL DEFAULT 0,   -- the person accepted large drops / quarantine / below cost
        enabled INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL DEFAULT 'idle',     -- idle | active
        applied_doc TEXT,                 -- the document that applied the rule
        revert_lines TEXT,                -- JSON: the lines that put the prices back
        last_run TEXT,                    -- last apply/revert attempt (UTC ISO)
        last_error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    """,
]

RETRY_AFTER = timedelta(minutes=5)

DAYS = {
    "monday": "monday", "mon": "monday", "понедельник": "monday", "пн": "monday",
    "tuesday": "tuesday", "tue": "tuesday", "вторник": "tuesday", "вт": "tuesday",
    "wednesday": "wednesday", "wed": "wednesday", "среда": "wednesday", "ср": "wednesday",
    "thursday": "thursday", "thu": "thursday", "четверг": "thursday", "чт": "thursday",
    "friday": "friday", "fri": "friday", "пятница": "friday", "пт": "friday",
    "saturday": "saturday", "sat": "saturday", "суббота": "saturday", "сб": "saturday",
    "sunday": "sunday", "sun": "sunday", "воскресенье": "sunday", "вс": "sunday",
}
DAILY = {"daily", "day", "every day", "everyday", "ежедневно", "каждый день"}
WEEKDAY_INDEX = {d: i for i, d in enumerate(
    ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}


class RuleError(ValueError):
    """A price rule that cannot be used (a schedule that does not parse, bad lines); nothing saved."""


# ---------------------------------------------------------------- time specs


@dataclass(frozen=True)
class When:
    """One point of a rule's window: weekly (weekday set), daily, or once (on set)."""

    at: time
    weekday: str | None = None
    on: date | None = None

    def last_at_or_before(self, now_local: datetime) -> datetime | None:
        """The latest occurrence <= now (in now's time zone), None for a one-off still to come."""
        tz = now_local.tzinfo
        if self.on is not None:
            t = datetime.combine(self.on, self.at, tz)
            return t if t <= now_local else None
        t = datetime.combine(now_local.date(), self.at, tz)
        if self.weekday is not None:
            t -= timedelta(days=(now_local.weekday() - WEEKDAY_INDEX[self.weekday]) % 7)
            if t > now_local:
                t -= timedelta(days=7)
        elif t > now_local:
            t -= timedelta(days=1)
        return t


def parse_when(spec: str) -> When:
    """"friday 18:00" / "пт 18:00" / "daily 09:00" / "2026-11-27 18:00" -> When; RuleError otherwise."""
    text = " ".join(str(spec).strip().casefold().split())
    m = re.fullmatch(r"(?:every\s+|каждую\s+|каждый\s+|каждое\s+)?(.+?)\s+(?:at\s+|в\s+)?(\d{1,2}:\d{2}(?::\d{2})?)", text)
    if not m:
        raise RuleError(f"cannot read the time {spec!r}: write it like 'friday 18:00', 'daily 09:00' or "
                        "'2026-11-27 18:00'")
    day, hhmm = m.group(1), m.group(2)
    if len(hhmm.split(":")[0]) == 1:
        hhmm = "0" + hhmm
    sched = schedule.Scheduler()
    try:
        if day in DAILY or day in {"every day"}:
            job = sched.every().day.at(hhmm)
            return When(at=_job_time(job))
        if day in DAYS:
            job = getattr(sched.every(), DAYS[day]).at(hhmm)
            return When(at=_job_time(job), weekday=DAYS[day])
        try:
            on = date.fromisoformat(day)
        except ValueError:
            raise RuleError(f"cannot read the day {m.group(1)!r} in {spec!r}: a weekday (friday, пт...), "
                            "'daily', or a date YYYY-MM-DD") from None
        job = sched.every().day.at(hhmm)
        return When(at=_job_time(job), on=on)
    except schedule.ScheduleValueError as exc:
        raise RuleError(f"cannot read the time {spec!r}: {exc}") from None


def _job_time(job: schedule.Job) -> time:
    assert job.at_time is not None
    return job.at_time


def parse_rule_text(text: str) -> tuple[Decimal, str, str]:
    """"-10% Friday 18:00, back Monday 09:00" -> (percent, start, end). RuleError if it does not read."""
    m = re.fullmatch(
        r"\s*([+-]?\d+(?:[.,]\d+)?)\s*%\s+(?:from\s+|с\s+)?(.+?)\s*[,;]\s*(?:back|until|revert|till|to|"
        r"обратно|до|вернуть)\s+(.+?)\s*", text, flags=re.IGNORECASE)
    if not m:
        raise RuleError(f"cannot read the rule {text!r}: write it like '-10% Friday 18:00, back Monday 09:00'")
    percent = Decimal(m.group(1).replace(",", "."))
    parse_when(m.group(2))
    parse_when(m.group(3))
    return percent, m.group(2), m.group(3)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"unknown time zone {tz!r}") from None


def in_window(start: When, end: When, now: datetime, tz: ZoneInfo) -> bool:
    """True when the latest start is later than the latest end (so the rule should be applied)."""
    local = now.astimezone(tz)
    s = start.last_at_or_before(local)
    e = end.last_at_or_before(local)
    if s is None:
        return False
    return e is None or s > e


# ---------------------------------------------------------------- rules


@dataclass
class PriceRule:
    id: str
    name: str
    account: str
    lines: list[dict[str, Any]]
    start_at: str
    end_at: str
    tz: str = "Europe/Moscow"
    confirmed: bool = False
    enabled: bool = True
    state: str = "idle"
    applied_doc: str | None = None
    last_error: str = ""


def add_rule(conn: sqlite3.Connection, *, account: str, start: str = "", end: str = "",
             lines: list[dict[str, Any]] | None = None, text: str = "", name: str = "",
             tz: str = "Europe/Moscow", confirmed: bool = False, now: datetime | None = None) -> PriceRule:
    """Create a rule from lines + start/end, or from a phrase ("-10% Friday 18:00, back Monday 09:00"),
    which applies the percentage to every card of the account unless `lines` narrows it (each line then
    gets the phrase's percentage). Every part is checked first; RuleError on anything unreadable."""
    now = now or datetime.now(UTC)
    if text:
        percent, start, end = parse_rule_text(text)
        targets = lines or [{"all": True}]
        lines = []
        for t in targets:
            scoped = {k: v for k, v in t.items() if k in ("item", "category", "card", "all")}
            if not scoped:
                raise RuleError(f"a rule's target must name item, category, card or all: {t!r}")
            lines.append({**scoped, "percent": str(percent)})
    if not start or not end:
        raise RuleError("a rule needs a start and an end (e.g. 'friday 18:00' and 'monday 09:00')")
    s, e = parse_when(start), parse_when(end)
    if s == e:
        raise RuleError("a rule's start and end are the same time")
    if s.on and e.on and datetime.combine(e.on, e.at) <= datetime.combine(s.on, s.at):
        raise RuleError(f"the rule ends ({end}) before it starts ({start})")
    _zone(tz)
    if not account:
        raise RuleError("a rule names no account")
    try:
        doc = price_docs.parse_document({"account": account, "lines": lines or []})
    except price_docs.PriceDocumentError as exc:
        raise RuleError(f"the rule's price lines are refused: {'; '.join(exc.problems)}") from None
    rule = PriceRule(id=uuid.uuid4().hex[:12], name=name or text or f"{start} - {end}", account=account,
                     lines=[price_docs.line_to_dict(x) for x in doc.lines], start_at=start, end_at=end, tz=tz,
                     confirmed=confirmed)
    with transaction(conn):
        conn.execute(
            "INSERT INTO price_rules(id, name, account, lines, start_at, end_at, tz, confirmed, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (rule.id, rule.name, account, json.dumps(rule.lines, ensure_ascii=False), start, end, tz,
             int(confirmed), now.isoformat()),
        )
    return rule


def rules(conn: sqlite3.Connection, account: str | None = None) -> list[PriceRule]:
    sql = "SELECT * FROM price_rules" + (" WHERE account=?" if account else "") + " ORDER BY created_at"
    return [
        PriceRule(id=r["id"], name=r["name"], account=r["account"], lines=json.loads(r["lines"]),
                  start_at=r["start_at"], end_at=r["end_at"], tz=r["tz"], confirmed=bool(r["confirmed"]),
                  enabled=bool(r["enabled"]), state=r["state"], applied_doc=r["applied_doc"],
                  last_error=r["last_error"])
        for r in conn.execute(sql, (account,) if account else ())
    ]


def set_enabled(conn: sqlite3.Connection, rule_id: str, enabled: bool) -> None:
    """Disable (or enable) a rule; a disabled rule that is active is reverted on the next tick."""
    with transaction(conn):
        if not conn.execute("UPDATE price_rules SET enabled=? WHERE id=?", (int(enabled), rule_id)).rowcount:
            raise RuleError(f"no price rule {rule_id!r}")


# ---------------------------------------------------------------- the runner


@dataclass
class RuleEvent:
    rule_id: str
    action: str  # applied | reverted | refused | failed
    document_id: str = ""
    detail: str = ""


AdapterFor = Callable[[str], Marketplace]


def run_due(conn: sqlite3.Connection, adapter_for: AdapterFor, *, now: datetime | None = None,
            settings: price_preview.PricingSettings | None = None) -> list[RuleEvent]:
    """One tick: apply every rule that entered its window, revert every rule that left it.

    `adapter_for(account)` gives the account's adapter. Errors of one rule never stop the others."""
    now = now or datetime.now(UTC)
    events: list[RuleEvent] = []
    for row in conn.execute("SELECT * FROM price_rules ORDER BY created_at").fetchall():
        should = bool(row["enabled"]) and in_window(parse_when(row["start_at"]), parse_when(row["end_at"]), now,
                                                    _zone(row["tz"]))
        waiting = held(conn, row["id"])
        if waiting and not should:  # the window closed before anyone confirmed: the sale is not sent late
            for doc_id in waiting:
                price_docs.discard_draft(conn, doc_id)
            _mark(conn, row["id"], now)
            events.append(RuleEvent(row["id"], "discarded", waiting[0], "the window closed unconfirmed"))
            continue
        if waiting:
            continue  # one held document waits for a person; no second one every few minutes
        if row["last_run"] and row["last_error"] and now - datetime.fromisoformat(row["last_run"]) < RETRY_AFTER:
            continue  # a failed attempt waits before the next one
        try:
            if should and row["state"] == "idle":
                events.append(_apply(conn, row, adapter_for(row["account"]), now, settings))
            elif not should and row["state"] == "active":
                events.append(_revert(conn, row, adapter_for(row["account"]), now, settings))
        except Exception as exc:  # noqa: BLE001 - one rule's failure must not stop the loop
            _mark(conn, row["id"], now, error=f"{type(exc).__name__}: {exc}")
            events.append(RuleEvent(row["id"], "failed", detail=str(exc)))
        if events and events[-1].rule_id == row["id"] and events[-1].action in ("refused", "failed", "held"):
            outbox.price_rule_failed(conn, row["name"], f"{events[-1].action}: {events[-1].detail}",
                                     now=now.timestamp())
    return events


def _mark(conn: sqlite3.Connection, rule_id: str, now: datetime, *, error: str = "", **cols: Any) -> None:
    sets = ", ".join(f"{k}=?" for k in cols)
    with transaction(conn):
        conn.execute(f"UPDATE price_rules SET {sets + ', ' if sets else ''}last_run=?, last_error=? WHERE id=?",
                     (*cols.values(), now.isoformat(), error, rule_id))


def _active_others(conn: sqlite3.Connection, account: str, rule_id: str) -> list[sqlite3.Row]:
    """The other rules of the account applied now, the first applied first."""
    return conn.execute("SELECT * FROM price_rules WHERE account=? AND id<>? AND state='active'"
                        " ORDER BY last_run, created_at", (account, rule_id)).fetchall()


def regular_prices(conn: sqlite3.Connection, account: str, rule_id: str = "") -> dict[str, Price]:
    """card id -> its price before any rule cut it: the current price, or, for a card another active rule
    changed, the price that rule will put back (the first applied rule's snapshot: the price list's)."""
    prices = current_prices(conn, account)
    for other in reversed(_active_others(conn, account, rule_id)):  # the first applied wins: written last
        for line in json.loads(other["revert_lines"] or "[]"):
            prices[line["card"]] = Price(Decimal(line["price"]), as_decimal(line.get("old_price")) or None,
                                         as_decimal(line.get("min_price")))
    return prices


def _rule_document(row: sqlite3.Row) -> price_docs.PriceDocument:
    doc = price_docs.parse_document({"account": row["account"], "lines": json.loads(row["lines"])})
    doc.source = f"rule:{row['id']}"
    doc.comment = f"price rule {row['name']}"
    return doc


def _apply(conn: sqlite3.Connection, row: sqlite3.Row, market: Marketplace, now: datetime,
           settings: price_preview.PricingSettings | None, doc: price_docs.PriceDocument | None = None,
           confirm: bool = False) -> RuleEvent:
    doc = doc or _rule_document(row)
    base = regular_prices(conn, row["account"], row["id"])
    pv = price_preview.preview(conn, doc, settings=settings, marketplace=market.name, now=now, base=base)
    revert = []  # the price each card goes back to: its regular one (or the imported card's price)
    for r in pv.changed:
        was = base.get(r.card.card_id) or r.old
        if was is not None:
            revert.append(price_docs.line_to_dict(price_docs.PriceLine(
                "card", r.card.card_id, price=was.price, old_price=was.old_price or Decimal(0),
                min_price=was.min_price)))
    try:
        res = price_apply.apply(conn, doc, market, confirm=confirm or bool(row["confirmed"]), settings=settings,
                                now=now, base=base)
    except price_docs.ConfirmationRequired as exc:
        _mark(conn, row["id"], now, error=str(exc))
        return RuleEvent(row["id"], "held", doc.id, "; ".join(exc.problems))
    except price_docs.PriceDocumentError as exc:
        _mark(conn, row["id"], now, error=str(exc))
        return RuleEvent(row["id"], "refused", doc.id, str(exc))
    if res.status == "failed":
        _mark(conn, row["id"], now, error="; ".join(f"{r.offer_id}: {r.error}" for r in res.failed))
        return RuleEvent(row["id"], "failed", doc.id, "the marketplace refused every price")
    ok_cards = {r.card_id for r in res.results if r.ok}
    revert = [x for x in revert if x["card"] in ok_cards]
    _mark(conn, row["id"], now, state="active", applied_doc=doc.id,
          revert_lines=json.dumps(revert, ensure_ascii=False))
    return RuleEvent(row["id"], "applied", doc.id, f"{len(ok_cards)} prices changed")


def _others_price(conn: sqlite3.Connection, account: str, rule_id: str) -> dict[str, dict[str, Any]]:
    """card id -> a revert line at the price another active rule set on it (the last applied wins)."""
    out: dict[str, dict[str, Any]] = {}
    for other in _active_others(conn, account, rule_id):
        for r in conn.execute("SELECT card_id, price, old_price, min_price FROM price_history WHERE document_id=?"
                              " AND ok=1 ORDER BY id", (other["applied_doc"] or "",)):
            out[r["card_id"]] = {"card": r["card_id"], "price": r["price"], "old_price": r["old_price"] or "0",
                                 **({"min_price": r["min_price"]} if r["min_price"] else {})}
    return out


def _revert(conn: sqlite3.Connection, row: sqlite3.Row, market: Marketplace, now: datetime,
            settings: price_preview.PricingSettings | None) -> RuleEvent:
    still = _others_price(conn, row["account"], row["id"])
    lines = [still.get(x["card"], x) for x in json.loads(row["revert_lines"] or "[]")]
    if not lines:
        _mark(conn, row["id"], now, state="idle")
        return RuleEvent(row["id"], "reverted", detail="nothing to put back")
    doc = price_docs.parse_document({"account": row["account"], "lines": lines, "rounding": "0.01"})
    doc.source = f"revert:{row['id']}"
    doc.comment = f"end of price rule {row['name']}"
    try:
        res = price_apply.apply(conn, doc, market, confirm=True, settings=settings, now=now)
    except price_docs.PriceDocumentError as exc:
        _mark(conn, row["id"], now, error=str(exc))
        return RuleEvent(row["id"], "refused", doc.id, str(exc))
    failed = {r.card_id for r in res.failed}
    if failed:  # keep what is still to put back; the next tick (after RETRY_AFTER) tries again
        _mark(conn, row["id"], now, error="; ".join(f"{r.offer_id}: {r.error}" for r in res.failed),
              revert_lines=json.dumps([x for x in json.loads(row["revert_lines"] or "[]") if x["card"] in failed],
                                      ensure_ascii=False))
        return RuleEvent(row["id"], "failed", doc.id, f"{len(failed)} prices not put back yet")
    _mark(conn, row["id"], now, state="idle", revert_lines=None)
    return RuleEvent(row["id"], "reverted", doc.id, f"{len(res.results)} prices put back")


# ---------------------------------------------------------------- the rule's page


def rule(conn: sqlite3.Connection, rule_id: str) -> PriceRule:
    for r in rules(conn):
        if r.id == rule_id:
            return r
    raise RuleError(f"no price rule {rule_id!r}")


def held(conn: sqlite3.Connection, rule_id: str) -> list[str]:
    """The rule's documents held for a person's confirmation (newest first)."""
    return [r[0] for r in conn.execute(
        "SELECT id FROM price_documents WHERE source=? AND status='draft' AND problems NOT IN ('', '[]')"
        " ORDER BY created_at DESC", (f"rule:{rule_id}",))]


def confirm_held(conn: sqlite3.Connection, rule_id: str, doc_id: str, market: Marketplace, *,
                 now: datetime | None = None, settings: price_preview.PricingSettings | None = None) -> RuleEvent:
    """A person confirmed the held document: it is sent now (from the regular prices) and the rule is
    active, to be reverted when its window closes. RuleError when there is nothing to confirm or the
    window has closed."""
    now = now or datetime.now(UTC)
    row = conn.execute("SELECT * FROM price_rules WHERE id=?", (rule_id,)).fetchone()
    if row is None:
        raise RuleError(f"no price rule {rule_id!r}")
    if doc_id not in held(conn, rule_id):
        raise RuleError("this document is not waiting for a confirmation (confirmed or discarded already)")
    if not in_window(parse_when(row["start_at"]), parse_when(row["end_at"]), now, _zone(row["tz"])):
        raise RuleError("the rule's window has closed: nothing was sent")
    doc = price_docs.load_document(conn, doc_id)
    doc.source, doc.comment = f"rule:{rule_id}", f"price rule {row['name']}"
    return _apply(conn, row, market, now, settings, doc=doc, confirm=True)


def discard_held(conn: sqlite3.Connection, rule_id: str, doc_id: str) -> bool:
    """The held document will not be sent; the rule tries again at its next window."""
    if doc_id not in held(conn, rule_id):
        return False
    price_docs.discard_draft(conn, doc_id)
    with transaction(conn):
        conn.execute("UPDATE price_rules SET last_error='' WHERE id=?", (rule_id,))
    return True


def next_change(r: PriceRule, now: datetime, horizon: timedelta = timedelta(days=15)) -> tuple[bool, datetime | None]:
    """(in its window now, the next moment that changes) in UTC, looked for to `horizon` ahead."""
    start, end, tz = parse_when(r.start_at), parse_when(r.end_at), _zone(r.tz)
    inside = in_window(start, end, now, tz)
    t = now.replace(second=0, microsecond=0)
    step = timedelta(minutes=1)
    while t < now + horizon:  # the windows' edges are on whole minutes
        t += step
        if in_window(start, end, t, tz) != inside:
            return inside, _edge(start, end, tz, t - step, t, inside)
        step = timedelta(minutes=15)
    return inside, None


def _edge(start: When, end: When, tz: ZoneInfo, a: datetime, b: datetime, inside: bool) -> datetime:
    while b - a > timedelta(minutes=1):
        mid = a + (b - a) / 2
        mid = mid.replace(second=0, microsecond=0)
        if mid <= a:
            break
        if in_window(start, end, mid, tz) != inside:
            b = mid
        else:
            a = mid
    return b


@dataclass
class Overlap:
    """Another rule that changes some of the same cards at the same time."""

    other: PriceRule
    cards: int  # cards both rules change
    together_from: datetime | None  # the next moment both are in their windows (UTC), None: never in 15 days


def overlaps(conn: sqlite3.Connection, rule_id: str, now: datetime | None = None) -> list[Overlap]:
    """The account's other enabled rules that share cards with this one and whose windows meet."""
    now = now or datetime.now(UTC)
    me = rule(conn, rule_id)
    mine = _cards_of(conn, me)
    out = []
    for other in rules(conn, me.account):
        if other.id == me.id or not other.enabled:
            continue
        shared = mine & _cards_of(conn, other)
        if not shared:
            continue
        out.append(Overlap(other, len(shared), _together(me, other, now)))
    return out


def _cards_of(conn: sqlite3.Connection, r: PriceRule) -> set[str]:
    doc = price_docs.parse_document({"account": r.account, "lines": r.lines})
    return {row.card.card_id for row in price_preview.preview(conn, doc).rows}


def _together(a: PriceRule, b: PriceRule, now: datetime, horizon: timedelta = timedelta(days=15)) -> datetime | None:
    wa = (parse_when(a.start_at), parse_when(a.end_at), _zone(a.tz))
    wb = (parse_when(b.start_at), parse_when(b.end_at), _zone(b.tz))
    t = now.replace(second=0, microsecond=0)
    while t < now + horizon:
        if in_window(*wa[:2], t, wa[2]) and in_window(*wb[:2], t, wb[2]):
            return t
        t += timedelta(minutes=15)
    return None


def install(scheduler: schedule.Scheduler, tick: Callable[[], Any], every_s: int = 30) -> schedule.Job:
    """Register the rules tick on the cloud's `schedule.Scheduler` (jobs.py): `tick` is typically
    `lambda: run_due(conn, adapter_for)`."""
    return scheduler.every(every_s).seconds.do(tick)
