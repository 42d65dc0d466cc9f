"""The Russian words the packers' page counts with: «1 товар», «2 товара», «5 товаров».

The plural form of a number comes from Babel's CLDR rules for Russian (one / few / many / other), never
from hand-made arithmetic; `count(n, "товар", "товара", "товаров")` writes the number with its word.
"""

from __future__ import annotations

from babel import Locale

_RU = Locale.parse("ru")


def plural(n: int | float, one: str, few: str, many: str) -> str:
    """The word for `n` (a fraction takes the `few` form: «1,5 товара», as CLDR's «other» does)."""
    form = _RU.plural_form(n)
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
