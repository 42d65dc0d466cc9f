"""The Russian words the packers' page counts with: «1 товар», «2 товара», «5 товаров».

The plural form of a number comes from Babel's CLDR rules for Russian (one / few / many / other), never
from hand-made arithmetic; `count(n, "товар", "товара", "товаров")` writes the number with its word.
"""

from __future__ import annotations

from babel.plural import PluralRule

# CLDR's plural rules for Russian, word for word as Babel ships them (tests/edge/test_words.py holds them
# equal to `babel.Locale.parse("ru").plural_form.rules`), evaluated by Babel. Asking the Locale for them
# loaded Babel's whole Russian locale (names of every language, currency and time zone: ~6.6 MB resident
# on the box) for three rules.
RU_PLURAL_RULES = {
    "one": "v in 0 and i mod 10 in 1 and i mod 100 not in 11",
    "few": "v in 0 and i mod 10 in 2..4 and i mod 100 not in 12..14",
    "many": "v in 0 and i mod 10 in 0 or v in 0 and i mod 10 in 5..9 or v in 0 and i mod 100 in 11..14",
}
_RU = PluralRule(RU_PLURAL_RULES)


def plural(n: int | float, one: str, few: str, many: str) -> str:
    """The word for `n` (a fraction takes the `few` form: «1,5 товара», as CLDR's «other» does)."""
    form = _RU(n)
    if form == "one":
        return one
    if form == "many":
        return many
    return few


def count(n: int, one: str, few: str, many: str) -> str:
    """«21 товар», «3 посылки», «11 ячеек»."""
    return f"{n} {plural(n, one, few, many)}"


def items(n: int) -> str:
    return count(n, "товар", "товара", "товаров")


def parcels(n: int) -> str:
    return count(n, "посылка", "посылки", "посылок")


def orders(n: int) -> str:
    return count(n, "заказ", "заказа", "заказов")


def bins(n: int) -> str:
    return count(n, "ячейка", "ячейки", "ячеек")
