"""The Wildberries sandbox's subject tree and what each subject asks of a new card.

Owns the data behind `GET /content/v2/object/all` and `GET /content/v2/object/charcs/{subjectId}` (a
small tree holding the demo catalog's subjects), and the checks a card upload goes through as on WB
(../shared/specs/wildberries/02-items.yaml): a subject that does not exist is refused at once
(`ThisCategoryDoesNotExist`), a card lacking a required characteristic too (`missing required
characteristics with ids: ...`); a value of the wrong type (`charcType` 1: an array of strings at most
`maxCount` long, 4: one number), an unknown characteristic or bad dimensions reach the seller later,
through the error list, in WB's words. Pure data and checks: no HTTP, no adapter.
"""

from __future__ import annotations

from typing import Any

# parentID -> parentName
PARENTS = {1: "Одежда", 2: "Дом", 3: "Аксессуары", 4: "Электроника"}

# subjectID -> (subjectName, parentID); the demo catalog's subjects (marketplaces/sandbox/seed.py) and a few more
SUBJECTS: dict[int, tuple[str, int]] = {
    192: ("Футболки", 1),
    155: ("Носки", 1),
    184: ("Рубашки", 1),
    1367: ("Кружки", 2),
    2178: ("Тарелки", 2),
    49: ("Рюкзаки", 3),
    515: ("Чехлы для телефонов", 4),
}

_COLOUR = {"charcID": 14177449, "name": "Цвет", "charcType": 1, "maxCount": 5, "unitName": ""}
_COMPOSITION = {"charcID": 17596, "name": "Состав", "charcType": 1, "maxCount": 10, "unitName": ""}
_SEX = {"charcID": 14177450, "name": "Пол", "charcType": 1, "maxCount": 1, "unitName": ""}
_COUNTRY = {"charcID": 14177451, "name": "Страна производства", "charcType": 1, "maxCount": 1, "unitName": ""}
_MATERIAL = {"charcID": 12, "name": "Материал изделия", "charcType": 1, "maxCount": 3, "unitName": ""}

# subjects whose goods carry a Честный знак code: a card must confirm it (`kizMarked`), else moderation refuses it
MARKED_SUBJECTS = {192, 184}

# subjectID -> [(characteristic, required)]
CHARCS: dict[int, list[tuple[dict[str, Any], bool]]] = {
    192: [(_COLOUR, True), (_COMPOSITION, True), (_SEX, True), (_COUNTRY, False),
          ({"charcID": 54337, "name": "Рост модели на фото", "charcType": 4, "maxCount": 0, "unitName": "см"}, False)],
    155: [(_COLOUR, True), (_COMPOSITION, True), (_SEX, False), (_COUNTRY, False)],
    184: [(_COLOUR, True), (_COMPOSITION, True), (_SEX, True), (_COUNTRY, False)],
    1367: [(_COLOUR, True), (_MATERIAL, True),
           ({"charcID": 90630, "name": "Объем", "charcType": 4, "maxCount": 0, "unitName": "мл"}, True),
           (_COUNTRY, False)],
    2178: [(_COLOUR, True), (_MATERIAL, True), (_COUNTRY, False)],
    49: [(_COLOUR, True), (_MATERIAL, True),
         ({"charcID": 90631, "name": "Объем рюкзака", "charcType": 4, "maxCount": 0, "unitName": "л"}, False),
         (_COUNTRY, False)],
    515: [(_COLOUR, True), (_MATERIAL, False),
          ({"charcID": 7561, "name": "Модель телефона", "charcType": 1, "maxCount": 20, "unitName": ""}, True)],
}


def subject(subject_id: int) -> dict[str, Any] | None:
    found = SUBJECTS.get(subject_id)
    if found is None:
        return None
    return {"subjectID": subject_id, "parentID": found[1], "subjectName": found[0], "parentName": PARENTS[found[1]]}


def subjects(name: str = "", parent_id: int | None = None) -> list[dict[str, Any]]:
    """The subjects whose name holds `name` (any case), of one parent if given, by id."""
    out = [subject(sid) for sid in sorted(SUBJECTS)]
    return [s for s in out if s and name.casefold() in s["subjectName"].casefold()
            and (parent_id is None or s["parentID"] == parent_id)]


def charcs(subject_id: int) -> list[dict[str, Any]]:
    """`object/charcs` rows of a subject ([] for an unknown one)."""
    name = SUBJECTS.get(subject_id, ("", 0))[0]
    return [dict(c, subjectID=subject_id, subjectName=name, required=req, popular=req, hasFilter=req,
                 isVariable=False, existNamedField=False) for c, req in CHARCS.get(subject_id, [])]


def missing_required(subject_id: int, variant: dict[str, Any]) -> list[int]:
    """The ids of the subject's required characteristics the card does not fill."""
    given = {c.get("id") for c in variant.get("characteristics") or [] if c.get("value") not in (None, "", [])}
    return [c["charcID"] for c, req in CHARCS.get(subject_id, []) if req and c["charcID"] not in given]


def problems(subject_id: int, variant: dict[str, Any]) -> list[str]:
    """What WB's card moderation answers about a card of this subject, in its words (Russian)."""
    known = {c["charcID"]: c for c, _ in CHARCS.get(subject_id, [])}
    out: list[str] = []
    for ch in variant.get("characteristics") or []:
        spec = known.get(ch.get("id"))
        value = ch.get("value")
        if spec is None:
            out.append(f"Характеристика с id {ch.get('id')} не относится к предмету {subject_id}")
        elif spec["charcType"] == 4:
            if isinstance(value, bool) or not isinstance(value, int | float):
                out.append(f"Характеристика «{spec['name']}» должна быть числом")
        elif not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            out.append(f"Характеристика «{spec['name']}» должна быть массивом строк")
        elif spec["maxCount"] and len(value) > spec["maxCount"]:
            out.append(f"Характеристика «{spec['name']}»: не больше {spec['maxCount']} значений")
    dims = variant.get("dimensions")
    if dims is None:  # WB fills zeros (the card then shows dimensions not valid)
        return out
    for key, label in (("length", "Длина"), ("width", "Ширина"), ("height", "Высота")):
        if not isinstance(dims.get(key), int) or dims[key] <= 0:
            out.append(f"Габариты: {label} упаковки должна быть целым числом сантиметров больше 0")
    weight = dims.get("weightBrutto")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        out.append("Габариты: вес с упаковкой должен быть больше 0 кг")
    if subject_id in MARKED_SUBJECTS and not variant.get("kizMarked"):
        out.append("Товар подлежит маркировке: подтвердите, что код Честного знака нанесён (kizMarked)")
    if len(variant.get("description") or "") > 5000:
        out.append("Описание длиннее 5000 символов")
    return out
