"""The demo's 1C infobase as its standard OData interface publishes it (`/<base>/odata/standard.odata/`),
for what the cloud creates in 1C: items of `Catalog_Номенклатура` and records of
`InformationRegister_ШтрихкодыНоменклатуры`.

It holds requests to 1C's documented shape and refuses the rest the way 1C does (`{"odata.error": {"code",
"message": {"lang": "ru", "value"}}}`): Basic auth, `$format=json` on every request, a JSON body whose
every property is one the entity type has (1C refuses an unknown property) with the type it has
(Edm.String within its length, Edm.Double, Edm.Boolean, Edm.Guid as a GUID; a `_Key` naming an object of
the infobase where it must), a catalog item with a Description, a barcode record whose key (Штрихкод) is
not taken; created objects answered 201 with `odata.metadata`, Ref_Key, Code and DataVersion; lists
(`GET …?$filter=`) answered `{"odata.metadata", "value": [...]}` for the `eq` filters joined by `and`.
Every request is kept (`requests`) for tests to read. Plain werkzeug; knows nothing of the cloud.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
EMPTY = "00000000-0000-0000-0000-000000000000"
UNITS = {"kg": "5f1c2b7e-0000-4000-8000-000000000166", "cm": "5f1c2b7e-0000-4000-8000-000000000004",
         "pcs": "5f1c2b7e-0000-4000-8000-000000000796"}  # кг, см, шт (codes of ОКЕИ in the tail)
KIND = "6a3d0c11-0000-4000-8000-000000000001"  # ВидНоменклатуры «Товар»
FOLDER = "7b4e1d22-0000-4000-8000-000000000001"  # a folder «С маркетплейсов»

# entity type -> property -> (Edm type, max length or 0); "ref:<set>" for a _Key that must name an object
_DIMENSIONS = {f"{p}{s}": t for p in ("Вес", "Длина", "Ширина", "Высота")
               for s, t in (("Использовать", ("Edm.Boolean", 0)), ("Числитель", ("Edm.Double", 0)),
                            ("Знаменатель", ("Edm.Double", 0)), ("ЕдиницаИзмерения_Key", ("ref:units", 0)))}
TYPES: dict[str, dict[str, tuple[str, int]]] = {
    "Catalog_Номенклатура": {
        "Ref_Key": ("Edm.Guid", 0), "DeletionMark": ("Edm.Boolean", 0), "Parent_Key": ("ref:folders", 0),
        "IsFolder": ("Edm.Boolean", 0), "Code": ("Edm.String", 11), "Description": ("Edm.String", 150),
        "Артикул": ("Edm.String", 50), "НаименованиеПолное": ("Edm.String", 1024),
        "ВидНоменклатуры_Key": ("ref:kinds", 0), "ЕдиницаИзмерения_Key": ("ref:units", 0),
        "Описание": ("Edm.String", 0), "Комментарий": ("Edm.String", 0), **_DIMENSIONS,
    },
    "InformationRegister_ШтрихкодыНоменклатуры": {
        "Штрихкод": ("Edm.String", 200), "Номенклатура_Key": ("ref:Catalog_Номенклатура", 0),
        "Характеристика_Key": ("Edm.Guid", 0), "Упаковка_Key": ("Edm.Guid", 0),
    },
}


@dataclass
class OneCState:
    login: str = "Администратор"
    password: str = "1c-demo"
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {"Catalog_Номенклатура": {}})
    barcodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # Штрихкод -> record
    requests: list[dict[str, Any]] = field(default_factory=list)
    refs: dict[str, set[str]] = field(default_factory=lambda: {"units": set(UNITS.values()), "kinds": {KIND},
                                                               "folders": {FOLDER}})


class OneCOData:
    """The WSGI app; `base` is the infobase's publication name (`/<base>/odata/standard.odata/`)."""

    def __init__(self, base: str = "trade", state: OneCState | None = None) -> None:
        self.prefix = f"/{base}/odata/standard.odata/"
        self.state = state or OneCState()
        self.lock = threading.Lock()
        self._code = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        with self.lock:
            resp = self.dispatch(req)
        return resp(environ, start_response)

    # -- answers

    @staticmethod
    def error(status: int, code: str, text: str) -> Response:
        body = {"odata.error": {"code": code, "message": {"lang": "ru", "value": text}}}
        return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")

    def ok(self, body: dict[str, Any], status: int = 200, *, entity: str, element: bool) -> Response:
        meta = f"http://localhost{self.prefix}$metadata#{entity}" + ("/@Element" if element else "")
        return Response(json.dumps({"odata.metadata": meta, **body}, ensure_ascii=False), status=status,
                        content_type="application/json;odata=minimalmetadata")

    # -- requests

    def dispatch(self, req: Request) -> Response:
        path = unquote(req.path)
        self.state.requests.append({"method": req.method, "path": path, "query": dict(req.args),
                                    "body": req.get_data(as_text=True)})
        if not self._authorized(req):
            return Response("", status=401, headers={"WWW-Authenticate": 'Basic realm="1C"'})
        if not path.startswith(self.prefix):
            return self.error(404, "-1", "Не найден ресурс")
        if req.args.get("$format") != "json":
            return self.error(400, "6", "Формат ответа не указан: передайте $format=json")
        entity = path[len(self.prefix):]
        if entity not in TYPES:
            return self.error(404, "2", f"Сегмент ресурса {entity!r} не найден")
        if req.method == "GET":
            return self._list(entity, req.args.get("$filter", ""))
        if req.method == "POST":
            return self._create(entity, req)
        return self.error(405, "-1", f"Метод {req.method} не поддерживается")

    def _authorized(self, req: Request) -> bool:
        header = req.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            login, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except ValueError:
            return False
        return (login, password) == (self.state.login, self.state.password)

    def _rows(self, entity: str) -> list[dict[str, Any]]:
        if entity == "InformationRegister_ШтрихкодыНоменклатуры":
            return list(self.state.barcodes.values())
        return list(self.state.objects[entity].values())

    def _list(self, entity: str, where: str) -> Response:
        rows = self._rows(entity)
        for part in [p for p in re.split(r"\s+and\s+", where.strip()) if p] if where else []:
            m = re.fullmatch(r"(\w+)\s+eq\s+(?:'((?:[^']|'')*)'|guid'([0-9a-fA-F-]{36})'|(true|false))", part.strip())
            if m is None:
                return self.error(400, "6", f"Не поддерживаемое условие отбора: {part}")
            name, text, guid, flag = m.groups()
            if name not in TYPES[entity]:
                return self.error(400, "6", f"Неизвестное свойство {name!r} в условии отбора")
            want: Any = text.replace("''", "'") if text is not None else guid if guid else flag == "true"
            rows = [r for r in rows if r.get(name) == want]
        return self.ok({"value": rows}, entity=entity, element=False)

    def _create(self, entity: str, req: Request) -> Response:
        if not (req.content_type or "").startswith("application/json"):
            return self.error(400, "6", "Тело запроса должно быть JSON (Content-Type: application/json)")
        try:
            body = json.loads(req.get_data(as_text=True))
        except ValueError:
            return self.error(400, "6", "Тело запроса не является корректным JSON")
        if not isinstance(body, dict):
            return self.error(400, "6", "Тело запроса должно быть объектом JSON")
        problem = self._check(entity, body)
        if problem:
            return self.error(400, "9", problem)
        if entity == "InformationRegister_ШтрихкодыНоменклатуры":
            if body["Штрихкод"] in self.state.barcodes:
                return self.error(400, "-1", "Запись с такими ключевыми полями существует!")
            record = {"Штрихкод": body["Штрихкод"], "Номенклатура_Key": body.get("Номенклатура_Key", EMPTY),
                      "Характеристика_Key": body.get("Характеристика_Key", EMPTY),
                      "Упаковка_Key": body.get("Упаковка_Key", EMPTY)}
            self.state.barcodes[body["Штрихкод"]] = record
            return self.ok(record, 201, entity=entity, element=True)
        ref = body.get("Ref_Key") or str(uuid.uuid4())
        if ref in self.state.objects[entity]:
            return self.error(400, "-1", "Объект с такой ссылкой уже существует")
        self._code += 1
        obj = {prop: None for prop in TYPES[entity]}
        obj.update({"DeletionMark": False, "IsFolder": False, "Parent_Key": EMPTY, "Описание": "", "Комментарий": "",
                    **body, "Ref_Key": ref, "Code": f"МС-{self._code:07d}", "DataVersion": "AAAAAQAAAAA="})
        self.state.objects[entity][ref] = obj
        return self.ok(obj, 201, entity=entity, element=True)

    def _check(self, entity: str, body: dict[str, Any]) -> str:
        props = TYPES[entity]
        for name, value in body.items():
            if name not in props:
                return f"Тип {entity} не содержит свойства {name!r}"
            kind, size = props[name]
            if kind == "Edm.String" and (not isinstance(value, str) or (size and len(value) > size)):
                return f"Свойство {name!r}: ожидается строка" + (f" длиной до {size}" if size else "")
            if kind == "Edm.Boolean" and not isinstance(value, bool):
                return f"Свойство {name!r}: ожидается Edm.Boolean"
            if kind == "Edm.Double" and (isinstance(value, bool) or not isinstance(value, int | float)):
                return f"Свойство {name!r}: ожидается Edm.Double"
            if kind == "Edm.Guid" or kind.startswith("ref:"):
                if not isinstance(value, str) or not GUID.match(value):
                    return f"Свойство {name!r}: ожидается Edm.Guid, получено {value!r}"
                if kind.startswith("ref:") and value != EMPTY and not self._exists(kind[4:], value):
                    return f"Свойство {name!r}: объект {value} не найден"
        if entity == "Catalog_Номенклатура" and not str(body.get("Description") or "").strip():
            return "Не заполнено наименование (Description)"
        if entity == "InformationRegister_ШтрихкодыНоменклатуры":
            if not str(body.get("Штрихкод") or "").strip():
                return "Не заполнено измерение Штрихкод"
            if body.get("Номенклатура_Key", EMPTY) == EMPTY:
                return "Не заполнено измерение Номенклатура"
        return ""

    def _exists(self, target: str, ref: str) -> bool:
        if target in self.state.refs:
            return ref in self.state.refs[target]
        return ref in self.state.objects.get(target, {})


@dataclass
class RunningOneC:
    app: OneCOData
    url: str  # the infobase's address: base_url of [onec.odata]
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(base: str = "trade", state: OneCState | None = None, port: int = 0) -> RunningOneC:
    app = OneCOData(base, state)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="onec-odata", daemon=True)
    thread.start()
    return RunningOneC(app, f"http://127.0.0.1:{server.server_port}/{base}", server, thread)
