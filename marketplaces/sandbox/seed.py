"""The deterministic demo catalog every sandbox seeds from (`--seed N`).

Item i (1..N) has the same article and barcode on every marketplace, the way a real seller lists one
1C item everywhere, so that the cloud can link cards to items by barcode. The demo loads the same items
into the cloud as the 1C nomenclature. Pure data: imports nothing of the adapters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

CATEGORIES = [
    ("Футболки", 192),
    ("Кружки", 1367),
    ("Рюкзаки", 49),
    ("Чехлы для телефонов", 515),
    ("Носки", 155),
]
NOUNS = {
    "Футболки": "Футболка хлопковая",
    "Кружки": "Кружка керамическая",
    "Рюкзаки": "Рюкзак городской",
    "Чехлы для телефонов": "Чехол силиконовый",
    "Носки": "Носки спортивные",
}
COLORS = ["чёрный", "белый", "синий", "красный", "зелёный", "серый"]


def ean13(number12: int) -> str:
    """An EAN-13 from 12 digits, with its check digit."""
    digits = f"{number12:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class DemoItem:
    index: int
    item_id: str  # the 1C nomenclature id
    article: str  # the seller's vendor code, used as offer id on every marketplace
    name: str
    barcode: str
    category: str
    subject_id: int  # a WB-style category id
    size: str
    price: Decimal
    cost: Decimal
    stock: int
    marked: bool  # goods under Честный знак marking


def demo_items(n: int, seed: int = 7) -> list[DemoItem]:
    rng = random.Random(seed)
    items = []
    for i in range(1, n + 1):
        category, subject = CATEGORIES[(i - 1) % len(CATEGORIES)]
        color = COLORS[rng.randrange(len(COLORS))]
        price = Decimal(rng.randrange(290, 4990, 10))
        items.append(
            DemoItem(
                index=i,
                item_id=f"00000000-0000-4000-8000-{i:012d}",
                article=f"MS-{i:05d}",
                name=f"{NOUNS[category]}, {color}",
                barcode=ean13(460700000000 + i),
                category=category,
                subject_id=subject,
                size="M" if category in ("Футболки", "Носки") else "0",
                price=price,
                cost=(price * Decimal("0.45")).quantize(Decimal("1")),
                stock=rng.randrange(0, 40) if i % 10 else 2,
                marked=category == "Футболки",
            )
        )
    return items


def demo_fbo(n: int) -> list[tuple[int, int, int]]:
    """The stock each sandbox keeps in the marketplace's own warehouses (FBO), the same on every
    marketplace: (item index, warehouse slot 0..1, quantity). Every third item lies at slot 0, every
    sixth at slot 1 too; item 11 runs low (3 units) so the demo shows a critical FBO stock."""
    out = []
    for i in range(1, n + 1):
        if i == 11:
            out.append((i, 0, 3))
        elif i % 3 == 0:
            out.append((i, 0, 20 + (i * 7) % 30))
            if i % 6 == 0:
                out.append((i, 1, 5 + (i * 5) % 15))
    return out
