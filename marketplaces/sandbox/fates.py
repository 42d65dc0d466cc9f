"""What becomes of a parcel after the seller handed it over, in every sandbox: delivered, cancelled on its
way (the buyer refused it, the marketplace gave up), not accepted at the sorting centre, or delivered and
later returned by the buyer. The fate of each order is drawn when it is handed over, at seeded rates, from
a random stream of its own (the sandbox's order stream is left alone), and each step comes due after a
delay in marketplace time (so a sandbox at `time_scale` 1000 delivers in seconds).

A sandbox calls `handed_over(order id)` when an order reaches its handed-over status and implements
`apply_fate(order id, step)`; the core calls `due()` before every request, so a status read always sees
the steps that came due. The control endpoint (every sandbox):

    POST /_sandbox/fates {"rates": {"delivered", "cancelled", "not_accepted", "returned"},
                          "transit_s": marketplace seconds to the first step, "return_s": from delivery
                          to the buyer's return, "orders": {order id: fate} (force one order's fate),
                          "now": true (every step planned comes due at once)}
                         -> the settings and the fates drawn so far
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

FATES = ("delivered", "cancelled", "not_accepted", "returned")

# the steps each fate goes through, with the share of transit_s (or, "+return", of transit_s + return_s)
# after which each comes due
_STEPS: dict[str, list[tuple[str, str, float]]] = {
    "delivered": [("delivered", "transit", 1.0)],
    "cancelled": [("cancelled", "transit", 0.5)],
    "not_accepted": [("not_accepted", "transit", 0.25)],
    "returned": [("delivered", "transit", 1.0), ("returned", "return", 1.0)],
}


@dataclass
class Fates:
    time_scale: float = 1.0
    seed: int = 7
    rates: dict[str, float] = field(default_factory=lambda: {"delivered": 0.8, "cancelled": 0.07,
                                                             "not_accepted": 0.03, "returned": 0.1})
    transit_s: float = 2 * 86400.0  # marketplace time from hand-over to delivery
    return_s: float = 3 * 86400.0  # marketplace time from delivery to the buyer's return arriving back
    drawn: dict[str, str] = field(default_factory=dict)  # order id -> fate
    plan: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic due, order id, step)
    done: dict[str, list[str]] = field(default_factory=dict)  # order id -> steps applied
    forced: dict[str, str] = field(default_factory=dict)  # order id -> fate, for orders not handed over yet

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def handed_over(self, oid: str, *, fate: str = "") -> str:
        """Draw (or take) the order's fate and plan its steps; an order already planned keeps its fate."""
        oid = str(oid)
        if oid in self.drawn:
            return self.drawn[oid]
        fate = fate or self.forced.pop(oid, "") or self._draw()
        self.drawn[oid] = fate
        self._plan(oid, fate, time.monotonic())
        return fate

    def _draw(self) -> str:
        roll, acc = self.rng.random(), 0.0
        total = sum(max(0.0, self.rates.get(f, 0.0)) for f in FATES) or 1.0
        for f in FATES:
            acc += max(0.0, self.rates.get(f, 0.0)) / total
            if roll < acc:
                return f
        return "delivered"

    def _plan(self, oid: str, fate: str, start: float) -> None:
        self.plan = [p for p in self.plan if p[1] != oid]
        for step, base, share in _STEPS[fate]:
            span = self.transit_s * share if base == "transit" else self.transit_s + self.return_s * share
            self.plan.append((start + span / self.time_scale, oid, step))
        self.plan.sort()

    def due(self) -> list[tuple[str, str]]:
        """The (order id, step) pairs that came due, in the order they fall, taken off the plan."""
        now = time.monotonic()
        out = [(oid, step) for at, oid, step in self.plan if at <= now]
        if out:
            self.plan = [p for p in self.plan if p[0] > now]
            for oid, step in out:
                self.done.setdefault(oid, []).append(step)
        return out

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        rates = body.get("rates")
        if rates is not None:
            if not isinstance(rates, dict) or set(rates) - set(FATES):
                raise ValueError(f"rates: only {', '.join(FATES)}")
            self.rates = {f: float(rates.get(f, 0.0)) for f in FATES}
        for key in ("transit_s", "return_s"):
            if key in body:
                setattr(self, key, max(0.0, float(body[key])))
        now = time.monotonic()
        for oid, fate in (body.get("orders") or {}).items():
            if fate not in FATES:
                raise ValueError(f"unknown fate {fate!r} (one of {', '.join(FATES)})")
            if str(oid) in self.drawn:  # already handed over: its fate changes from now
                self.drawn[str(oid)] = fate
                self._plan(str(oid), fate, now)
            else:
                self.forced[str(oid)] = fate
        if body.get("now"):
            self.plan = [(now, oid, step) for _, oid, step in self.plan]
        return self.state()

    def state(self) -> dict[str, Any]:
        return {"rates": dict(self.rates), "transit_s": self.transit_s, "return_s": self.return_s,
                "fates": dict(self.drawn), "steps": {o: list(s) for o, s in self.done.items()},
                "pending": len(self.plan)}
