"""The reusable core of every marketplace sandbox: a threaded WSGI app on 127.0.0.1.

Owns what is the same on every sandbox: routing by path template, the auth check hook, request and
response validation against the official OpenAPI spec (openapi-core, via `marketplaces.spec`), the
documented limits as token buckets answering real 429s, `time_scale`, fault injection, and the control
endpoints (identical on every sandbox, no auth):

    POST /_sandbox/orders   {"count": N}                      -> {"orders": [native ids]}
    POST /_sandbox/faults   {"rate_429", "rate_5xx", "latency_ms", "malformed_rate", "lost_reply_rate",
                             "move_delay_ms", "late_buyer_rate"}
                            -> the faults now set (lost_reply_rate: applied, then answered 504;
                               move_delay_ms: a request moving orders is applied, then answered that late;
                               late_buyer_rate: orders placed regardless of published stock)

Buyers' orders (`make_orders`) are placed only for listed cards with published stock > 0 and never for
more units than that stock, as a marketplace does; each unit ordered comes off the published stock.
`late_buyer()` says when a fault asks for a late buyer's race instead.
    GET  /_sandbox/stocks   -> {"stocks"}: the state's stocks alone (`stocks_view`), cheap enough to read
                               every few milliseconds (a bench watching for a zero)
    GET  /_sandbox/state    -> {"stocks", "prices", "orders": {id: native status}, "requests", "throttled",
                                "throttled_items", "injected", "spec_violations", "order_calls",
                                "stock_repeats", ...marketplace extras}
                               order_calls: {order id: {action: [calls received, calls applied]}} for
                               the routes that move an order (`Route.action`), to tell a duplicate move;
                               stock_repeats: stock writes of a card's last written number while it still
                               showed it (`note_stock_write`), to tell a push sent twice from a newer number
                               stock_reads: the last stock reads (`note_stock_read`): {"route", "named": the
                               ids the request named by the method's filter, null when it named none (all)}
    POST /_sandbox/fates    what becomes of handed-over parcels (delivered, cancelled, not accepted,
                            returned): rates, delays, forced fates — see sandbox/fates.py
    POST /_sandbox/reset    -> re-seed from scratch (limits, faults, counters too)
    POST /_sandbox/override {"path_moves": {"/old/path": "/new/path"}} -> serve an operation at a new path
                               (the old one answers 404), as when a marketplace moves an endpoint
    POST /_sandbox/x/<name> -> `SandboxApp.control(name, body)`, marketplace-specific helpers

A marketplace sandbox subclasses `SandboxApp`: sets `marketplace`, `credentials`, `limits`, returns its
`routes()`, and implements `check_auth`, `error_reply`, `throttle_reply`, `seed_catalog`, `make_orders`,
`snapshot`. A response that fails the spec is a sandbox bug: it is logged at ERROR and counted in
`spec_violations`, which tests assert to be empty. The sandbox never imports an adapter.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from marketplaces.sandbox.fates import Fates
from marketplaces.spec import SpecSet, load_specs

log = logging.getLogger("marketplaces.sandbox")


@dataclass(frozen=True)
class SandboxLimit:
    """A documented limit the sandbox enforces: token bucket of `burst`, refilled `rate` per second
    (marketplace time); a 4xx reply costs `error_cost` tokens."""

    rate: float
    burst: float
    error_cost: float = 1.0
    window_s: float = 0.0  # > 0: a sliding window instead — at most `burst` requests in any `window_s`


class Window:
    """At most `limit.burst` requests in any `limit.window_s` seconds (marketplace time), the literal
    reading of "N requests per minute" where no burst is documented."""

    def __init__(self, limit: SandboxLimit, time_scale: float) -> None:
        self.max = int(limit.burst)
        self.window = limit.window_s / time_scale
        self.time_scale = time_scale
        self.sent: deque[float] = deque()

    def take(self, cost: float = 1.0) -> float:
        now = time.monotonic()
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()
        if len(self.sent) + max(1, int(cost)) <= self.max:
            self.sent.extend([now] * max(1, int(cost)))
            return 0.0
        return (self.sent[0] + self.window - now) * self.time_scale

    def penalize(self, cost: float) -> None:
        self.sent.extend([time.monotonic()] * int(cost))


def make_limiter(limit: SandboxLimit, time_scale: float) -> Bucket | Window:
    return Window(limit, time_scale) if limit.window_s > 0 else Bucket(limit, time_scale)


class Bucket:
    def __init__(self, limit: SandboxLimit, time_scale: float) -> None:
        self.rate = limit.rate * time_scale
        self.burst = limit.burst
        self.time_scale = time_scale
        self.tokens = limit.burst
        self.stamp = time.monotonic()

    def take(self, cost: float = 1.0) -> float:
        """0.0 when a token was taken, else the seconds (marketplace time) until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0 - 1e-9:
            self.tokens -= cost
            return 0.0
        return (1.0 - self.tokens) / self.rate * self.time_scale

    def penalize(self, cost: float) -> None:
        self.tokens -= cost


@dataclass
class Faults:
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    latency_ms: float = 0.0
    malformed_rate: float = 0.0
    lost_reply_rate: float = 0.0  # the request is applied, then the answer is lost (504): a timeout's twin
    move_delay_ms: float = 0.0  # a request moving orders (Route.action) is applied, then answered this late
    # buyers racing the seller's stock update: the chance that a new order (`/_sandbox/orders`) is placed
    # for a listed card whatever its published stock, as a buyer who clicked before the zero arrived.
    # 0 (the default): orders are made only for cards with published stock > 0, never beyond it.
    late_buyer_rate: float = 0.0


class ApiError(Exception):
    """Raised by a handler: the sandbox answers `status` with the marketplace's error shape."""

    def __init__(self, status: int, message: str, *, code: str = "", body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.body = body


@dataclass
class SandboxRequest:
    method: str
    path: str
    template: str  # the documented path template
    spec_path: str = ""  # the documented path (before a sandbox path move)
    path_params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    documented: bool = True  # an API operation of the spec (False: a file link the sandbox handed out)

    def json(self) -> Any:
        if not self.body:
            raise ApiError(400, "request body is empty", code="BadRequest")
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, "request body is not valid JSON", code="BadRequest") from None


@dataclass
class SandboxReply:
    status: int = 200
    json: Any = None
    data: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.json is None:
            return b""
        return json.dumps(self.json, ensure_ascii=False).encode("utf-8")


@dataclass
class Route:
    method: str
    template: str
    handler: Callable[[SandboxRequest], SandboxReply]
    group: str = ""  # key of SandboxApp.limits; "" = no per-method limit
    auth: bool = True
    cost: Callable[[SandboxRequest], float] | None = None  # tokens of the group a request takes (items)
    # a route that moves orders: its action ("confirm", "ship"...) and the ids of the orders a request
    # moves (read before the handler runs), counted per order in `SandboxApp.order_calls`
    action: str = ""
    moves: Callable[[SandboxRequest], list[str]] | None = None
    # False: not an API operation but a link the sandbox hands out (a report file): no spec to hold it to
    documented: bool = True

    def __post_init__(self) -> None:
        self.names = re.findall(r"\{([^/]+?)\}", self.template)
        self.regex = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(self.template)) + "$")


class SandboxApp:
    """A marketplace sandbox as a WSGI app. Subclass it; see the module docstring."""

    marketplace = ""
    limits: dict[str, SandboxLimit] = {}
    account_limit: SandboxLimit | None = None

    def __init__(self, *, seed: int = 20, time_scale: float = 1.0, validate: bool = True, rng_seed: int = 1,
                 cabinet: int = 0) -> None:
        """`cabinet`: which of the seller's cabinets on this marketplace the sandbox is (0 the first). A
        marketplace is one system: its order, supply and shipment ids never repeat across cabinets, and
        the buyers of another cabinet order on their own (its random stream differs)."""
        self.seed_n = seed
        self.time_scale = float(time_scale)
        self.validate = validate
        self.cabinet = int(cabinet)
        self.rng_seed = rng_seed + 1009 * self.cabinet
        self.lock = threading.RLock()
        self._counter_lock = threading.RLock()
        self.credentials: dict[str, str] = self.make_credentials()
        self._routes = self.routes()
        self.path_moves: dict[str, str] = {}
        self._specs: SpecSet | None = None
        self._init_state()

    # -- to implement

    def make_credentials(self) -> dict[str, str]:
        """The exact headers an adapter must send."""
        raise NotImplementedError

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def check_auth(self, req: SandboxRequest) -> SandboxReply | None:
        """None when the request may pass, else the documented 401/403 reply."""
        for name, value in self.credentials.items():
            if req.headers.get(name.lower()) != value:
                return self.error_reply(401, "unauthorized", code="Unauthorized")
        return None

    def error_reply(self, status: int, message: str, *, code: str = "", template: str = "") -> SandboxReply:
        """The marketplace's error body for `status` (`template`: the documented path, where shapes differ)."""
        return SandboxReply(status, {"code": code or str(status), "message": message})

    def throttle_reply(self, retry_after_s: float, group: str) -> SandboxReply:
        wait = max(1, int(retry_after_s + 0.999))
        return SandboxReply(429, {"message": "too many requests"}, headers={"Retry-After": str(wait)})

    def seed_catalog(self, n: int) -> None:
        raise NotImplementedError

    def make_orders(self, count: int) -> list[str]:
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """{"stocks": ..., "prices": ..., "orders": {id: native status}} plus any extras."""
        raise NotImplementedError

    def stocks_view(self) -> dict[str, Any]:
        """The snapshot's "stocks" alone; a sandbox whose snapshot is heavy builds just these."""
        return self.snapshot()["stocks"]

    def control(self, name: str, body: dict[str, Any]) -> Any:
        raise ApiError(404, f"no sandbox control {name!r}")

    def apply_fate(self, oid: str, step: str) -> None:
        """Move a handed-over order one step of its fate (sandbox/fates.py): "delivered", "cancelled",
        "not_accepted" or "returned", in the marketplace's own statuses. The default moves nothing."""

    def advance_fates(self) -> None:
        """Apply every step of the handed-over orders' fates that came due (called under the lock)."""
        for oid, step in self.fates.due():
            self.apply_fate(oid, step)

    def late_buyer(self) -> bool:
        """True when this new order is a late buyer's (fault `late_buyer_rate`): placed for a listed card
        whatever its published stock. Never true without the fault (the random stream is left alone)."""
        rate = self.faults.late_buyer_rate
        return rate > 0 and self.rng.random() < rate

    def own_representation(self, req: SandboxRequest) -> bytes:
        """The request body as the spec documents it, where the marketplace also accepts a value in the
        form it gives out itself (e.g. an id it answers as a string and documents as a number). Called
        before validation; the default changes nothing."""
        return req.body

    def first_id(self, base: int, step: int) -> int:
        """The first id of a counter starting at `base` in the first cabinet: cabinets take ranges `step` apart."""
        return base + self.cabinet * step

    def account_options(self) -> dict[str, Any]:
        """The AccountConfig.options an adapter of this sandbox needs (announced by `sandbox serve`)."""
        return {}

    # -- state

    def _init_state(self) -> None:
        self.rng = random.Random(self.rng_seed)
        self.fates = Fates(time_scale=self.time_scale, seed=self.rng_seed + 7)
        self.faults = Faults()
        self.requests = 0
        self.throttled = 0
        self.throttled_items = 0
        self.stock_repeats = 0
        self._last_written: dict[Any, tuple[int, float]] = {}
        self.stock_repeat_samples: list[list[Any]] = []  # [key, quantity, seconds since its last write]
        self.stock_reads: deque[dict[str, Any]] = deque(maxlen=200)  # `note_stock_read`
        self.injected = {"429": 0, "5xx": 0, "malformed": 0}
        self.spec_violations: list[str] = []
        self.by_path: dict[str, int] = {}
        self.order_calls: dict[str, dict[str, list[int]]] = {}
        self.buckets: dict[str, Bucket | Window] = {g: make_limiter(lim, self.time_scale)
                                                    for g, lim in self.limits.items()}
        self.account_bucket = make_limiter(self.account_limit, self.time_scale) if self.account_limit else None
        with self.lock:
            self.seed_catalog(self.seed_n)

    def reset(self) -> None:
        self.path_moves = {}
        self._init_state()

    @property
    def specs(self) -> SpecSet:
        if self._specs is None:
            self._specs = load_specs(self.marketplace)
        return self._specs

    def state(self) -> dict[str, Any]:
        with self.lock:
            self.advance_fates()
            snap = self.snapshot()
        snap.update(
            after_handover=self.fates.state(),
            requests=self.requests,
            throttled=self.throttled,
            throttled_items=self.throttled_items,
            stock_repeats=self.stock_repeats,
            stock_repeat_samples=list(self.stock_repeat_samples),
            stock_reads=list(self.stock_reads),
            injected=dict(self.injected),
            spec_violations=list(self.spec_violations),
            by_path=dict(self.by_path),
            order_calls={o: {a: list(n) for a, n in acts.items()} for o, acts in self.order_calls.items()},
        )
        return snap

    def note_stock_write(self, key: Any, quantity: int, shown: int | None) -> None:
        """A stock write accepted for `key` (a card at a warehouse, in the marketplace's own terms), `shown`
        what the card showed just before it: one that writes the number last written while the card still
        shows it (no sale moved it meanwhile) changed nothing, a push sent twice (`stock_repeats`)."""
        now = time.monotonic()
        with self._counter_lock:
            last = self._last_written.get(key)
            if last is not None and last[0] == quantity == shown:
                self.stock_repeats += 1
                if len(self.stock_repeat_samples) < 20:
                    self.stock_repeat_samples.append([str(key), quantity, round(now - last[1], 3)])
            self._last_written[key] = (quantity, now)

    def note_stock_read(self, route: str, named: list[Any] | None) -> None:
        """A stock read answered: the ids its request named by the method's own filter (None: it named none,
        the whole catalogue was asked for), as the sandbox saw them."""
        with self._counter_lock:
            self.stock_reads.append({"route": route, "named": None if named is None else [str(x) for x in named]})

    def count_item_throttle(self, n: int = 1) -> None:
        with self._counter_lock:
            self.throttled_items += n

    # -- WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except Exception:  # a sandbox bug: answer 500 and say so loudly
            log.exception("sandbox %s crashed on %s %s", self.marketplace, request.method, request.path)
            response = Response(b'{"message":"sandbox internal error"}', status=500, content_type="application/json")
        return response(environ, start_response)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str], str] | None:
        moved_back = {new: old for old, new in self.path_moves.items()}
        if path in self.path_moves and path not in moved_back:
            return None
        lookup = moved_back.get(path, path)
        best: tuple[Route, dict[str, str], str] | None = None
        for route in self._routes:
            if route.method != method:
                continue
            hit = route.regex.match(lookup)
            if hit and (best is None or best[0].template.count("{") > route.template.count("{")):
                best = (route, dict(zip(route.names, hit.groups(), strict=False)), lookup)
        return best

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_sandbox/"):
            return self._control(request, path[len("/_sandbox/"):])
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        # a repeated key (an array parameter, form style) keeps every value
        query: dict[str, Any] = {k: (vs if len(vs) > 1 else vs[0]) for k, vs in request.args.lists()}
        found = self._match(request.method, path)
        with self._counter_lock:
            self.requests += 1
        if found is None:
            return self._respond(None, self.error_reply(404, f"no such method {request.method} {path}",
                                                        code="NotFound"), validate=False)
        route, params, spec_path = found
        with self._counter_lock:
            self.by_path[route.template] = self.by_path.get(route.template, 0) + 1
        req = SandboxRequest(request.method, path, route.template, spec_path, params, query, headers, body,
                             documented=route.documented)
        faults = self.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000.0)
        if route.auth:
            refused = self.check_auth(req)
            if refused is not None:
                return self._respond(req, refused)
        group_bucket = self.buckets.get(route.group) if route.group else None
        wait = 0.0
        with self._counter_lock:
            for bucket in (self.account_bucket, group_bucket):
                if bucket is not None:
                    wait = bucket.take(_cost(route, req) if bucket is group_bucket else 1.0)
                    if wait > 0:
                        self.throttled += 1
                        break
            roll = self.rng.random()
        if wait > 0:
            return self._respond(req, self.throttle_reply(wait, route.group or "account"))
        if roll < faults.rate_429:
            with self._counter_lock:
                self.injected["429"] += 1
            return self._respond(req, self.throttle_reply(1.0, route.group or "account"))
        if roll < faults.rate_429 + faults.rate_5xx:
            with self._counter_lock:
                self.injected["5xx"] += 1
            return self._respond(req, self.error_reply(503, "service temporarily unavailable", code="Unavailable",
                                                      template=route.template))
        reply: SandboxReply
        req.body = body = self.own_representation(req)
        if self.validate and route.documented:
            errors = self.specs.request_errors(req.method, spec_path, query=query, headers=headers,
                                               body=body or None,
                                               content_type=headers.get("content-type", "application/json"))
            errors = [e for e in errors if not e.startswith("SecurityValidationError")]
        else:
            errors = []
        if errors:
            reply = self.error_reply(400, "request does not match the API: " + errors[0][:500], code="BadRequest",
                                     template=route.template)
        else:
            moved: list[str] = []
            try:
                with self.lock:
                    self.advance_fates()
                    moved = self._count_moves(route, req)
                    reply = route.handler(req)
            except ApiError as err:
                reply = self.error_reply(err.status, err.message, code=err.code, template=route.template)
                if err.body is not None:
                    reply = SandboxReply(err.status, err.body)
            if reply.status < 300:
                with self.lock:
                    for oid in moved:
                        self.order_calls[oid][route.action][1] += 1
            if moved and faults.move_delay_ms > 0:
                time.sleep(faults.move_delay_ms / 1000.0)
        if 400 <= reply.status < 500 and group_bucket is not None:
            limit = self.limits[route.group]
            if limit.error_cost > 1:
                with self._counter_lock:
                    group_bucket.penalize(limit.error_cost - 1)
        with self._counter_lock:
            lost = reply.status < 300 and self.rng.random() < faults.lost_reply_rate
            malformed = self.rng.random() < faults.malformed_rate
        if lost:
            with self._counter_lock:
                self.injected["lost"] = self.injected.get("lost", 0) + 1
            return self._respond(req, self.error_reply(504, "gateway timeout", code="Timeout",
                                                      template=route.template), validate=False)
        if malformed and reply.status < 300:
            with self._counter_lock:
                self.injected["malformed"] += 1
            raw = reply.body() or b'{"result": true}'
            return Response(raw[: max(1, len(raw) // 2)], status=reply.status, content_type=reply.content_type)
        return self._respond(req, reply)

    def _count_moves(self, route: Route, req: SandboxRequest) -> list[str]:
        """Count a request that reached a route moving orders, per order it names; the orders counted."""
        if not route.action or route.moves is None:
            return []
        try:
            ids = [str(i) for i in route.moves(req)]
        except (ApiError, KeyError, TypeError, ValueError):
            return []  # the handler answers what is wrong with it
        for oid in ids:
            self.order_calls.setdefault(oid, {}).setdefault(route.action, [0, 0])[0] += 1
        return ids

    def _documented_type(self, req: SandboxRequest, status: int, current: str) -> str:
        """The JSON media type the spec documents for this status (application/json vs problem+json)."""
        found = self.specs.find(req.method, req.template)
        if found is None:
            return current
        doc = found[0].doc

        def deref(node: Any) -> Any:
            while isinstance(node, dict) and "$ref" in node:
                target: Any = doc
                for part in node["$ref"].lstrip("#/").split("/"):
                    target = target.get(part, {}) if isinstance(target, dict) else {}
                node = target
            return node

        op = deref(doc["paths"][found[1]].get(req.method.lower(), {}))
        content = deref(deref(op.get("responses", {})).get(str(status)) or {}).get("content") or {}
        if current in content or not content:
            return current
        json_types = [t for t in content if t.endswith("json")]
        return json_types[0] if json_types and current.endswith("json") else current

    def _respond(self, req: SandboxRequest | None, reply: SandboxReply, *, validate: bool = True) -> Response:
        if req is not None and not req.documented:
            validate = False
        if self.validate and req is not None and req.documented and reply.status >= 400:
            reply.content_type = self._documented_type(req, reply.status, reply.content_type)
        data = reply.body()
        if self.validate and validate and req is not None:
            errors = self.specs.response_errors(
                req.method, req.spec_path or req.path, reply.status, body=data or None, content_type=reply.content_type,
                headers=reply.headers, query=req.query, request_headers=req.headers, request_body=req.body or None)
            errors = [e for e in errors if "MissingResponseContent" not in e or data]
            if errors and not _undocumented_status(errors):
                text = f"{req.method} {req.template} -> {reply.status}: {errors[0]}"
                log.error("SANDBOX SPEC VIOLATION (a sandbox bug): %s", text)
                with self._counter_lock:
                    self.spec_violations.append(text[:1000])
        response = Response(data, status=reply.status, content_type=reply.content_type if data else None)
        for k, v in reply.headers.items():
            response.headers[k] = v
        return response

    def _control(self, request: Request, name: str) -> Response:
        def ok(obj: Any, status: int = 200) -> Response:
            return Response(json.dumps(obj, ensure_ascii=False, default=str), status=status,
                            content_type="application/json")

        try:
            body = request.get_json(silent=True) or {}
            if name == "state" and request.method == "GET":
                return ok(self.state())
            if name == "stocks" and request.method == "GET":
                with self.lock:
                    self.advance_fates()
                    return ok({"stocks": self.stocks_view()})
            if request.method != "POST":
                return ok({"error": "use POST"}, 405)
            if name == "orders":
                count = int(body.get("count", 1))
                with self.lock:
                    return ok({"orders": [str(i) for i in self.make_orders(count)]})
            if name == "faults":
                for key in ("rate_429", "rate_5xx", "latency_ms", "malformed_rate", "lost_reply_rate",
                            "move_delay_ms", "late_buyer_rate"):
                    if key in body:
                        setattr(self.faults, key, float(body[key]))
                return ok(self.faults.__dict__)
            if name == "fates":
                with self.lock:
                    return ok(self.fates.control(body))
            if name == "reset":
                with self.lock:
                    self.reset()
                return ok({"reset": True})
            if name == "override":
                moves = body.get("path_moves") or {}
                self.path_moves.update({str(k): str(v) for k, v in moves.items()})
                return ok({"path_moves": self.path_moves})
            if name.startswith("x/"):
                with self.lock:
                    return ok(self.control(name[2:], body))
            return ok({"error": f"unknown control {name!r}"}, 404)
        except ApiError as err:
            return ok({"error": err.message}, err.status)
        except (TypeError, ValueError) as exc:
            return ok({"error": str(exc)}, 400)


def _cost(route: Route, req: SandboxRequest) -> float:
    """What a request takes from its group's bucket: 1, or its item count where the marketplace counts
    items (a body too broken to count costs 1; validation refuses it anyway)."""
    if route.cost is None:
        return 1.0
    try:
        return max(1.0, float(route.cost(req)))
    except Exception:  # noqa: BLE001 - an unreadable body is refused later by validation
        return 1.0


def _undocumented_status(errors: list[str]) -> bool:
    """A status the spec does not list (e.g. 429 on Ozon, 503 injected): not a sandbox bug."""
    return all("ResponseNotFound" in e or "Unknown response http status" in e for e in errors)


# ---------------------------------------------------------------- serving


@dataclass
class RunningSandbox:
    """A sandbox being served on 127.0.0.1 in a background thread (tests, demo, bench)."""

    app: SandboxApp
    url: str
    credentials: dict[str, str]
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def quiet_werkzeug() -> None:
    """No access log line per request (benchmarks send thousands)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def make_sandbox_server(app: SandboxApp, port: int = 0) -> Any:
    """A threaded werkzeug server on 127.0.0.1 speaking HTTP/1.1 (keep-alive, as marketplaces do)."""
    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(app: SandboxApp, port: int = 0) -> RunningSandbox:
    quiet_werkzeug()
    server = make_sandbox_server(app, port)
    server.daemon_threads = True
    url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name=f"sandbox-{app.marketplace}", daemon=True)
    thread.start()
    return RunningSandbox(app, url, dict(app.credentials), server, thread)
