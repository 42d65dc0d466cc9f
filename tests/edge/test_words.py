"""The packers' page counts in Russian plural forms by CLDR's rules, as Babel ships them, without loading
Babel's whole Russian locale for them (~6.6 MB resident on the box)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from babel import Locale

from edge_agent import words

ROOT = Path(__file__).resolve().parents[2]


def test_the_rules_are_babels_cldr_rules_for_russian():
    assert Locale.parse("ru").plural_form.rules == words.RU_PLURAL_RULES
    cldr = Locale.parse("ru").plural_form
    for n in [*range(0, 250), 1011, 1.5, 0.5, 21.0]:
        assert words._RU(n) == cldr(n), n


def test_counts_read_as_a_packer_says_them():
    assert [words.items(n) for n in (1, 2, 5, 11, 21, 22, 25, 111)] == [
        "1 товар", "2 товара", "5 товаров", "11 товаров", "21 товар", "22 товара", "25 товаров", "111 товаров"]
    assert words.plural(1.5, "товар", "товара", "товаров") == "товара"
    assert (words.parcels(3), words.orders(12), words.bins(1)) == ("3 посылки", "12 заказов", "1 ячейка")


def test_counting_loads_no_locale_data(tmp_path):
    code = ("import json, sys\nfrom edge_agent import words\nwords.items(3); words.bins(21)\n"
            "ld = sys.modules.get('babel.localedata')\n"
            "print(json.dumps(sorted(getattr(ld, '_cache', {})) if ld else []))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
