"""Честный знак code parsing and validation (pure functions)."""

from __future__ import annotations

import pytest
from edge_testkit import MUG, marking

from edge_agent.tasks.marking import GS, MarkingError, gtin_check_ok, looks_like_marking, parse


def test_full_code_with_group_separators() -> None:
    mc = parse(marking(MUG, "abc!DEF%12345"))
    assert mc.gtin == MUG["barcode"].zfill(14)
    assert mc.serial == "abc!DEF%12345"
    assert mc.key_id == "EE10" and len(mc.crypto) == 44
    assert mc.code_id == f"01{mc.gtin}21abc!DEF%12345"


@pytest.mark.parametrize("sub", ["<GS>", "{GS}", "~1", "\\x1d"])
def test_scanner_substitutes_for_gs(sub: str) -> None:
    assert parse(marking(MUG, "SERIAL0000001", sep=sub)).serial == "SERIAL0000001"


def test_symbology_prefix_and_lost_separators() -> None:
    code = "]d2" + marking(MUG, "SERIAL0000001")
    assert parse(code).serial == "SERIAL0000001"
    assert parse(marking(MUG, "SERIAL0000001", sep="")).serial == "SERIAL0000001"
    short = f"01{MUG['barcode'].zfill(14)}21AbC123{GS}93dGfx"
    mc = parse(short)
    assert (mc.serial, mc.key_id, mc.crypto) == ("AbC123", "", "dGfx")


def test_bad_codes_are_refused_with_reason() -> None:
    gtin = MUG["barcode"].zfill(14)
    bad_check = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)
    with pytest.raises(MarkingError, match="контрольной"):
        parse(f"01{bad_check}21SERIAL0000001{GS}91EE10{GS}92{'A' * 44}")
    with pytest.raises(MarkingError, match="криптохвост"):
        parse(f"01{gtin}21SERIAL0000001")
    with pytest.raises(MarkingError, match="неполный"):
        parse(f"01{gtin}21SERIAL0000001{GS}91EE10{GS}92ABC")
    with pytest.raises(MarkingError):
        parse(MUG["barcode"])


def test_helpers() -> None:
    assert gtin_check_ok(MUG["barcode"].zfill(14))
    assert looks_like_marking(marking(MUG, "X1"))
    assert not looks_like_marking(MUG["barcode"])
