"""Unit economics (issue 16 point 4): price − the marketplace's commission − logistics − acquiring − the
1C cost, per card: the domain's arithmetic (cloud_sync/money/economics.py), every part either the
marketplace's figure or the seller's estimate, named as such. Against the sandboxes:
tests/marketplaces/test_unit_economics_sandbox.py."""

from __future__ import annotations

from decimal import Decimal

from cloud_sync.money import economics
from marketplaces.base import SaleFees

EST = economics.Estimates(commission_percent=Decimal(20), logistics=Decimal(100), acquiring_percent=Decimal("1.5"))


def test_every_part_from_the_marketplace_is_not_an_estimate() -> None:
    fees = SaleFees("c", commission_percent=Decimal(15), logistics=Decimal(76), acquiring=Decimal(15), source="x")
    e = economics.compute(Decimal(1200), Decimal(450), fees, EST, fees_price=Decimal(1000))
    assert (e.commission, e.logistics, e.acquiring) == (Decimal(180), Decimal(76), Decimal(18))  # 1.5 % scales
    assert e.profit == Decimal(1200 - 180 - 76 - 18 - 450) and e.estimated == []
    assert e.margin_percent == Decimal("39.7")


def test_missing_parts_come_from_the_estimates_and_are_named() -> None:
    e = economics.compute(Decimal(1000), Decimal(400), SaleFees("c", commission_percent=Decimal("24.5")), EST)
    assert (e.commission, e.logistics, e.acquiring) == (Decimal(245), Decimal(100), Decimal(15))
    assert e.estimated == ["logistics", "acquiring"]
    assert e.profit == Decimal(240) and e.margin_percent == Decimal(24)
    nothing = economics.compute(Decimal(1000), None, None, EST)
    assert nothing.estimated == ["commission", "logistics", "acquiring"] and nothing.profit is None
    loss = economics.compute(Decimal(300), Decimal(250), None, EST)
    assert loss.profit == Decimal("-114.5") and loss.margin_percent < 0  # a gross margin of 50 is a loss
