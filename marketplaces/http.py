"""The one HTTP client every marketplace adapter uses.

Owns: sending a named endpoint of an `EndpointMap` for one account; pacing it by the documented
limits (a token bucket per account x limit group, an account-wide bucket such as Ozon's 50 rps per
Client-Id, per-item rules such as Ozon's once-per-30-s stock pair); retrying 429, 5xx and timeouts
with exponential backoff and jitter while honouring the marketplace's retry headers
(`X-Ratelimit-Retry`, `X-Ratelimit-Reset`, `Retry-After`); turning failures into the typed errors of
`marketplaces.base`, naming account and endpoint, never holding a secret; and reading bodies
defensively (`Reply.json()` raises `BadResponse` for malformed JSON, HTML pages, bodies cut short).

Usage from an adapter:

    client = HttpClient(config, load_endpoint_map("ozon", config.endpoints), auth=ozon_auth)
    reply = client.call("stocks_update", json={"stocks": [...]}, item_keys=["123@7"])
    data = reply.json()

Rules worth knowing:
- Buckets are shared by every client of the same account (key: `options["limit_key"]`, else
  `options["client_id"]`, else the account name), so two jobs of one account never add up past a limit.
- The client runs at the documented ceiling, exactly: a bucket's token is taken at the instant it refills
  (computed from the monotonic clock, never "sleep, then a margin"), and a late wake-up loses nothing where
  the bucket can hold it. Network jitter never draws a 429: one token of the burst is kept spare (the
  marketplace's bucket is a token ahead of ours, a request may arrive up to one interval early), and a
  sliding window counts a request from the moment its answer came back (the marketplace saw it before).
  Where the burst is one, requests leave exactly one interval apart.
- Non-idempotent endpoints (status changes) are re-sent automatically only after a 429 (which means
  "not applied"); after a timeout or a 5xx they raise `Uncertain` and the adapter reads the state back.
- `time_scale` (from `AccountConfig.time_scale`) divides every wait: limits, backoff, retry headers.
- `add_exchange_hook(fn)` lets tests see every exchange (`Exchange`, secrets masked) for contract checks.
"""

from __future__ import annotations

import contextvars
import email.utils
import json as jsonlib
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from marketplaces.base import (
    AccountConfig,
    AuthError,
    BadResponse,
    InvalidRequest,
    MarketplaceError,
    RateLimited,
    Uncertain,
    urgent_var,
)
from marketplaces.endpoints import Endpoint, EndpointMap, ItemRule, Limit

log = logging.getLogger("marketplaces.http")

_stopping = threading.Event()


def stop_waiting() -> None:
    """The process is stopping (SIGTERM): every wait between attempts ends now and its call gives up as
    `Uncertain` — nothing is recorded as done, and the next start reads back before acting again. Without
    it a stop waited out the retry backoffs of unreachable marketplaces (10 s, then SIGKILL)."""
    _stopping.set()


_answer_by: contextvars.ContextVar[float | None] = contextvars.ContextVar("marketplace_answer_by", default=None)


def answer_within(seconds: float) -> contextvars.Token:
    """Calls made from now on in this context (a page's request: a person is waiting) wait between
    attempts only while `seconds` allow, then give up as `Uncertain`: a marketplace out of reach is said
    in seconds, not after a minute of backoff. Undo with `answer_as_jobs_do(token)`."""
    return _answer_by.set(time.monotonic() + seconds)


def answer_as_jobs_do(token: contextvars.Token) -> None:
    _answer_by.reset(token)


def _pause(seconds: float) -> None:
    """Wait for the pace (a bucket's next token, a 429's hold); a stopping process does not wait."""
    if _stopping.wait(seconds):
        raise MarketplaceError("the service is stopping: nothing was sent", retryable=True)

# ---------------------------------------------------------------- pacing


class TokenBucket:
    """`rate` tokens per second into a bucket of `burst`; `acquire` waits for a token. Thread-safe.

    `penalize` takes tokens without waiting (WB: a 4xx costs 10); `hold_until` blocks the bucket until
    a moment the marketplace named (after a 429).

    `urgent_window` (seconds, burst 1 only): the documented limit is a count per window ("5 requests per
    second": `rate × urgent_window` in any `urgent_window` seconds) and the bucket paces the calls evenly
    inside it. An urgent call (a zero) then need not wait for the pace's next token while that window has
    room: it goes at once and takes its token in advance (the bucket goes below zero), so the calls after
    it wait as much longer. Every window still holds at most the count: a paced call finds a whole token,
    so the window before it holds fewer than `rate ×` its length; an urgent one goes only when the window
    before it has room, counting each call from its answer (`acquire_ticket`: the marketplace saw it
    before) and each call still in flight as now."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = _pause, urgent_window: float = 0.0) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        if urgent_window and (burst != 1 or rate * urgent_window < 1 - 1e-9):
            raise ValueError("an urgent window needs a bucket of burst 1 and room for one call in it")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._hold = 0.0
        self._lock = threading.Lock()
        self._urgent = 0  # urgent callers waiting: the others let them have the next token
        self.waited_s = 0.0
        self.window = urgent_window
        self.window_max = int(rate * urgent_window + 1e-9)
        self._calls: list[list[float]] = []  # with a window: each call's answer moment (inf while in flight)
        self.ahead = 0  # urgent calls let go ahead of the pace

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, cost: float = 1.0, *, urgent: bool = False) -> float:
        """Take `cost` tokens, sleeping as long as needed; returns the seconds waited. An `urgent` caller
        (a stock push of a zero: an item ran out) gets the next token before the others waiting."""
        waited, ticket = self.acquire_ticket(cost, urgent=urgent)
        if ticket is not None:  # no answer to wait for here: the call counts from now
            ticket[0] = self._clock()
        return waited

    def acquire_ticket(self, cost: float = 1.0, *, urgent: bool = False) -> tuple[float, list[float] | None]:
        """`acquire`, and with an urgent window the call's ticket: the caller sets `ticket[0]` to the
        moment the answer came back (until then the call counts as made now). None without a window."""
        waited = 0.0
        if urgent:
            with self._lock:
                self._urgent += 1
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    self._refill(now)
                    wait = max(0.0, self._hold - now)
                    if wait == 0.0:
                        need = min(cost, self.burst)
                        if self.tokens >= need - 1e-9 and (urgent or not self._urgent):
                            self.tokens -= cost
                            self.waited_s += waited
                            return waited, self._ticket(now)
                        if urgent and self.window and self._room(now):
                            self.tokens -= cost  # in advance: the paced calls after it wait the longer
                            self.ahead += 1
                            self.waited_s += waited
                            return waited, self._ticket(now)
                        # the refill instant of the tokens needed (an urgent caller waiting: look again soon)
                        wait = max(0.0, (need - self.tokens) / self.rate)
                        if urgent and self.window:  # or the moment the window has room again
                            answered = [t[0] for t in self._calls if t[0] != math.inf]
                            if answered:
                                wait = min(wait, max(0.0005, min(answered) + self.window - now))
                        if not urgent and self._urgent:
                            wait = max(wait, 0.0005)
                if wait > 0:
                    self._sleep(wait)
                    waited += wait
        finally:
            if urgent:
                with self._lock:
                    self._urgent -= 1

    def _room(self, now: float) -> bool:
        """Under the lock: whether the last `window` seconds hold fewer calls than the limit's count."""
        self._calls = [t for t in self._calls if t[0] > now - self.window]
        return len(self._calls) < self.window_max

    def _ticket(self, now: float) -> list[float] | None:
        if not self.window:
            return None
        self._calls = [t for t in self._calls if t[0] > now - self.window]
        ticket = [math.inf]
        self._calls.append(ticket)
        return ticket

    def penalize(self, cost: float) -> None:
        with self._lock:
            self._refill(self._clock())
            self.tokens -= cost

    def hold_until(self, moment: float) -> None:
        with self._lock:
            self._hold = max(self._hold, moment)
            self.tokens = min(self.tokens, 0.0)


class SlidingWindow:
    """At most `max_requests` in any `window` seconds (client side of a window limit). Thread-safe.

    Each request is stamped when it is let go and stamped again when its answer has come back: the
    marketplace saw it before that, on the same clock's time line, so a window counted from the answer
    always ends after the marketplace's own — requests that reach it later or earlier than they left never
    make it count one too many, and the window needs no margin."""

    def __init__(self, max_requests: int, window: float) -> None:
        self.max = max(1, int(max_requests))
        self.window = window
        self.sent: list[list[float]] = []
        self._lock = threading.Lock()
        self._hold = 0.0
        self._urgent = 0
        self.waited_s = 0.0

    def acquire_ticket(self, cost: float = 1.0, *, urgent: bool = False) -> tuple[float, list[float]]:
        waited = 0.0
        if urgent:
            with self._lock:
                self._urgent += 1
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    self.sent = [t for t in self.sent if t[0] > now - self.window]
                    wait = max(0.0, self._hold - now)
                    if wait == 0.0:
                        if len(self.sent) < self.max and (urgent or not self._urgent):
                            ticket = [now]
                            self.sent.append(ticket)
                            self.waited_s += waited
                            return waited, ticket
                        wait = (min(t[0] for t in self.sent) + self.window - now) if len(self.sent) >= self.max \
                            else 0.0005
                _pause(max(wait, 0.0005))
                waited += wait
        finally:
            if urgent:
                with self._lock:
                    self._urgent -= 1

    def acquire(self, cost: float = 1.0, *, urgent: bool = False) -> float:
        return self.acquire_ticket(cost, urgent=urgent)[0]

    def penalize(self, cost: float) -> None:
        with self._lock:
            self.sent.extend([time.monotonic()] for _ in range(int(cost)))

    def hold_until(self, moment: float) -> None:
        with self._lock:
            self._hold = max(self._hold, moment)


class ItemGate:
    """At most `max` sends of one key in any `window_s` seconds (sliding window). Thread-safe."""

    def __init__(self, rule: ItemRule, time_scale: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rule = rule
        self.window = rule.window_s / time_scale
        self._clock = clock
        self._sent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def delay(self, keys: Iterable[str]) -> float:
        """Seconds until every key may be sent again (0 when all may go now)."""
        now = self._clock()
        worst = 0.0
        with self._lock:
            for key in keys:
                q = self._sent.get(key)
                if not q:
                    continue
                while q and q[0] <= now - self.window:
                    q.popleft()
                if len(q) >= self.rule.max:
                    worst = max(worst, q[0] + self.window - now)
        return worst

    def record(self, keys: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._sent.setdefault(key, deque()).append(now)


_BUCKETS: dict[tuple[str, ...], TokenBucket] = {}
_INFLIGHT: dict[tuple[str, ...], threading.BoundedSemaphore] = {}
# statuses that mean "throttled, not applied": 429, and 420 "Enhance Your Calm" (Yandex.Market's limits)
THROTTLE_STATUSES = (429, 420)
_GATES: dict[tuple[str, ...], ItemGate] = {}
_REGISTRY_LOCK = threading.Lock()


def _shared_bucket(key: tuple[str, ...], limit: Limit, time_scale: float, safety: float) -> TokenBucket:
    with _REGISTRY_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None and limit.window_s > 0:
            bucket = _BUCKETS[key] = SlidingWindow(int(limit.burst), limit.window_s / time_scale)  # type: ignore[assignment]
        if bucket is None:
            # exactly the documented rate; with a burst to spare, one token kept back absorbs jitter (the
            # marketplace's bucket stays a token ahead of ours); with a burst of one, requests leave exactly
            # one interval apart (`safety` > 0: the spare token; 0: the whole burst)
            spare = safety > 0 and limit.burst > 1
            burst = max(1.0, limit.burst - (1 if spare else 0))
            bucket = _BUCKETS[key] = TokenBucket(limit.rate * time_scale, burst,
                                                 urgent_window=limit.urgent_window_s / time_scale)
        return bucket


def _shared_inflight(key: tuple[str, ...], parallel: int) -> threading.BoundedSemaphore:
    with _REGISTRY_LOCK:
        sem = _INFLIGHT.get(key)
        if sem is None:
            sem = _INFLIGHT[key] = threading.BoundedSemaphore(parallel)
        return sem


def _shared_gate(key: tuple[str, ...], rule: ItemRule, time_scale: float) -> ItemGate:
    with _REGISTRY_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = ItemGate(rule, time_scale)
        return gate


def reset_limiters() -> None:
    """Forget every shared bucket and item gate (tests that restart a sandbox call it)."""
    with _REGISTRY_LOCK:
        _BUCKETS.clear()
        _GATES.clear()
        _INFLIGHT.clear()


# ---------------------------------------------------------------- exchanges seen (contract tests)


@dataclass
class Exchange:
    """One request and its reply as the client saw them; header values of secrets are masked."""

    marketplace: str
    account: str
    endpoint: str
    method: str
    path: str
    query: dict[str, Any]
    request_headers: dict[str, str]
    request_body: bytes | None
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    content_type: str
    documented: bool = True  # False: a link the marketplace handed out (a report file), not an API call


EXCHANGE_HOOKS: list[Callable[[Exchange], None]] = []


def add_exchange_hook(fn: Callable[[Exchange], None]) -> None:
    EXCHANGE_HOOKS.append(fn)


def remove_exchange_hook(fn: Callable[[Exchange], None]) -> None:
    if fn in EXCHANGE_HOOKS:
        EXCHANGE_HOOKS.remove(fn)


# ---------------------------------------------------------------- replies


@dataclass
class Reply:
    """A marketplace answer: status, headers, raw body; `json()` parses it or raises `BadResponse`."""

    status: int
    headers: httpx.Headers
    content: bytes
    account: str
    endpoint: str

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def bad(self, message: str) -> BadResponse:
        return BadResponse(message, account=self.account, endpoint=self.endpoint, status=self.status)

    def json(self) -> Any:
        if not self.content:
            raise self.bad(f"HTTP {self.status} with an empty body where JSON was expected")
        head = self.content.lstrip()[:1]
        if self.content_type == "text/html" or head == b"<":
            raise self.bad(f"HTTP {self.status} answered an HTML page, not JSON")
        try:
            return jsonlib.loads(self.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.bad(f"HTTP {self.status} body is not valid JSON ({len(self.content)} bytes: "
                           f"{type(exc).__name__} at {getattr(exc, 'pos', '?')})") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise self.bad(f"expected a JSON object, got {type(data).__name__}")
        return data


def field_of(data: Any, *path: str | int, reply: Reply | None = None, account: str = "",
             endpoint: str = "") -> Any:
    """`data[path0][path1]...`, raising `BadResponse` naming the missing field when absent."""
    cur = data
    for i, key in enumerate(path):
        try:
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            where = ".".join(str(p) for p in path[: i + 1])
            acc, ep = (reply.account, reply.endpoint) if reply else (account, endpoint)
            raise BadResponse(f"missing field {where} in the answer", account=acc, endpoint=ep) from None
    return cur


# ---------------------------------------------------------------- the client


@dataclass
class RetryPolicy:
    """Retries on 429, 5xx and timeouts: `attempts` failed tries in total, backoff `base_s * 2^n` capped
    at `cap_s`, with full jitter (a random 50-100% of it); all in marketplace time (divided by
    time_scale). A 429 that names when to come back (Retry-After and its kin) is the marketplace pacing
    us, not a failure: it is waited out, up to `throttled_waits` times, without using up `attempts` (else
    a burst of pacing answers between two server errors gave up on a request that was about to go)."""

    attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0
    throttled_waits: int = 30

    def backoff(self, attempt: int, rng: random.Random) -> float:
        raw = min(self.cap_s, self.base_s * (2 ** attempt))
        return raw * (0.5 + 0.5 * rng.random())


@dataclass
class ClientStats:
    requests: int = 0
    throttled: int = 0  # 429 replies received
    retries: int = 0
    server_errors: int = 0
    timeouts: int = 0
    waited_s: float = 0.0
    by_endpoint: dict[str, int] = field(default_factory=dict)


RETRY_HEADERS = ("x-ratelimit-retry", "retry-after", "x-ratelimit-reset", "ratelimit-reset",
                 "x-ratelimit-resource-until")  # the last: Yandex.Market's RFC 822 moment


def retry_after_seconds(headers: httpx.Headers | dict[str, str]) -> float | None:
    """The wait the marketplace asked for, in its own seconds, from the first retry header present."""
    for name in RETRY_HEADERS:
        value = headers.get(name)
        if value is None or str(value).strip() == "":
            continue
        value = str(value).strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            continue
    return None


class HttpClient:
    """Sends named endpoints for one account. See the module docstring."""

    def __init__(
        self,
        config: AccountConfig,
        endpoints: EndpointMap,
        *,
        auth: Callable[[dict[str, str]], None] | None = None,
        validate: Callable[[Endpoint, Any], None] | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = None,
        safety: float = 0.03,
        transport: httpx.BaseTransport | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.map = endpoints
        self.account = config.name
        self.time_scale = float(config.time_scale or 1.0)
        self._auth = auth
        self._validate = validate
        self.retry = retry or RetryPolicy()
        self.timeout_s = float(timeout_s or config.options.get("timeout_s", 30.0))
        self.safety = safety
        self.stats = ClientStats()
        self._rng = random.Random(seed)
        self._limit_key = str(config.options.get("limit_key") or config.options.get("client_id") or config.name)
        # values worth masking: not short numeric ids such as an Ozon Client-Id (they would mask product ids)
        self._secrets = [v for v in config.credentials.values()
                         if isinstance(v, str) and len(v) >= 8 and not v.isdigit()]
        self._http = httpx.Client(timeout=self.timeout_s, transport=transport, follow_redirects=False)

    # -- plumbing

    def close(self) -> None:
        self._http.close()

    def scrub(self, text: str) -> str:
        """`text` with every credential value masked (for logs and error messages)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def bucket(self, group: str) -> TokenBucket:
        limit = self.map.groups[group]
        key = (self.map.marketplace, self._limit_key, group)
        return _shared_bucket(key, limit, self.time_scale, self.safety)

    def inflight(self) -> threading.BoundedSemaphore | None:
        """The account's cap on requests in flight (endpoint map `parallel`), shared by its clients."""
        if not self.map.parallel:
            return None
        return _shared_inflight((self.map.marketplace, self._limit_key, "*inflight*"), self.map.parallel)

    def account_bucket(self) -> TokenBucket | None:
        if self.map.account_limit is None:
            return None
        key = (self.map.marketplace, self._limit_key, "*account*")
        return _shared_bucket(key, self.map.account_limit, self.time_scale, self.safety)

    def item_batch(self, name: str) -> int:
        """Items per request of endpoint `name` where its group counts items, not requests (Yandex.Market:
        SKUs per minute): the endpoint's batch, but at most half the group's bucket. A request costing
        the whole bucket waits until the bucket is full again, and a bucket that is full stops filling:
        every moment the sender wakes up late is lost for good (on a loaded machine, a few per cent of the
        ceiling). At half the bucket, the tokens that came in meanwhile wait for the next request."""
        ep = self.map[name]
        limit = self.map.groups[ep.group]
        half = max(1, int(limit.burst // 2))
        return min(ep.batch, half) if ep.batch else half

    def gate(self, rule_name: str) -> ItemGate:
        rule = self.map.item_rules[rule_name]
        return _shared_gate((self.map.marketplace, self._limit_key, rule_name), rule, self.time_scale)

    def url(self, ep: Endpoint, path_params: dict[str, Any]) -> tuple[str, str]:
        base = self.map.base_url(ep.family, self.config.base_url, self.config.options.get("base_urls"))
        path = ep.format_path(**path_params)
        return base + path, path

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.waited_s += seconds
            by = _answer_by.get()
            if by is not None and time.monotonic() + seconds > by:
                raise Uncertain("no answer in time: the marketplace is out of reach or slow", account=self.account,
                                retryable=True)
            if _stopping.wait(seconds):
                raise Uncertain("the service is stopping", account=self.account, endpoint="", retryable=True)

    def _error(self, cls: type[MarketplaceError], message: str, ep: Endpoint, **kw: Any) -> MarketplaceError:
        return cls(self.scrub(message), account=self.account, endpoint=ep.name, **kw)

    # -- the call

    def call(
        self,
        name: str,
        *,
        path_params: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        item_keys: Collection[str] = (),
        ok_statuses: Collection[int] = (),
        cost: float = 1.0,
        record_items: bool = True,
        url: str | None = None,
    ) -> Reply:
        """Send endpoint `name`; returns the 2xx (or `ok_statuses`) reply, else raises a typed error.

        `item_keys` are the keys of the endpoint's item rule carried by this request (e.g. the
        "product@warehouse" pairs of an Ozon stock push): the call waits until each may be sent, and
        counts them as sent on a 2xx unless `record_items=False` (the caller then records only what the
        marketplace accepted, with `client.gate(rule).record(keys)`).
        `cost` is what the request takes from its group's bucket where the marketplace counts items,
        not requests (Yandex.Market: SKUs per minute): the number of items it carries.
        `url`: a whole address the marketplace handed out (a report file's download link) instead of the
        endpoint's path; it is fetched with the endpoint's limits and retries but without the account's
        credentials (a storage host must never see the API key), and its exchange is marked as not an API
        call (`Exchange.documented` False: no spec describes a file's link)."""
        ep = self.map[name]
        if self._validate is not None:
            try:
                self._validate(ep, json)
            except InvalidRequest:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                raise self._error(InvalidRequest, f"payload refused before sending: {exc}", ep) from None
        documented = url is None
        if url is None:
            url, path = self.url(ep, path_params or {})
        else:
            link = httpx.URL(url)
            if link.scheme not in ("http", "https") or not link.host:
                raise self._error(InvalidRequest, "a download link must be an http(s) address", ep)
            path = link.path
        body = None if json is None else jsonlib.dumps(json, ensure_ascii=False).encode("utf-8")
        send_headers = {"Accept": "application/json" if documented else "*/*"}
        if body is not None:
            send_headers["Content-Type"] = "application/json"
        if self._auth is not None and documented:
            self._auth(send_headers)
        send_headers.update(headers or {})
        gate = self.gate(ep.item_rule) if ep.item_rule and item_keys else None
        if gate is not None:
            self._sleep(gate.delay(item_keys))
        group = self.bucket(ep.group)
        acct = self.account_bucket()
        last_problem = ""
        attempt = waits = 0  # failed tries (against retry.attempts); 429s waited out as asked
        while attempt < self.retry.attempts:
            urgent = urgent_var.get()
            acct_ticket = None
            if acct is not None:
                acct_waited, acct_ticket = acct.acquire_ticket(urgent=urgent)
                self.stats.waited_s += acct_waited
            try:
                waited, ticket = group.acquire_ticket(cost, urgent=urgent)
            except BaseException:  # stopping: the account's call was not made (it counts from now)
                if acct_ticket is not None:
                    acct_ticket[0] = time.monotonic()
                raise
            self.stats.waited_s += waited
            self.stats.requests += 1
            self.stats.by_endpoint[name] = self.stats.by_endpoint.get(name, 0) + 1
            inflight = self.inflight()
            try:
                if inflight is not None:
                    inflight.acquire()
                try:
                    resp = self._http.request(ep.method, url, params=params, content=body, headers=send_headers)
                    content = resp.content
                finally:
                    if inflight is not None:
                        inflight.release()
                    answered = time.monotonic()  # the marketplace saw it by now
                    for held in (ticket, acct_ticket):
                        if held is not None:
                            held[0] = answered
            except httpx.ConnectError as exc:  # never reached the marketplace: always safe to resend
                last_problem = f"cannot connect: {type(exc).__name__}"
                self._backoff(attempt, ep, last_problem)
                attempt += 1
                continue
            except httpx.RemoteProtocolError as exc:
                last_problem = f"the answer was cut short ({type(exc).__name__})"
                if not ep.idempotent:
                    raise self._error(Uncertain, f"{last_problem}; it may or may not have been applied",
                                      ep, retryable=True) from None
                self._backoff(attempt, ep, last_problem)
                attempt += 1
                continue
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self.stats.timeouts += 1
                last_problem = f"{type(exc).__name__} after sending (no complete answer)"
                if not ep.idempotent:
                    raise self._error(Uncertain, f"{last_problem}; it may or may not have been applied",
                                      ep, retryable=True) from None
                self._backoff(attempt, ep, last_problem)
                attempt += 1
                continue
            reply = Reply(resp.status_code, resp.headers, content, self.account, ep.name)
            self._notify(ep, path, params, send_headers, body, reply, documented=documented)
            status = resp.status_code
            if status in THROTTLE_STATUSES:
                self.stats.throttled += 1
                wait = retry_after_seconds(resp.headers)
                last_problem = f"HTTP {status} too many requests"
                if wait is not None and waits < self.retry.throttled_waits:
                    waits += 1
                    scaled = wait / self.time_scale
                    group.hold_until(time.monotonic() + scaled)
                    log.warning("%s %s: %d, waiting %.3fs as asked (wait %d)", self.account, name,
                                status, scaled, waits)
                    self.stats.retries += 1
                    continue
                self._backoff(attempt, ep, last_problem)
                attempt += 1
                continue
            if status >= 500:
                self.stats.server_errors += 1
                last_problem = f"HTTP {status} server error"
                if not ep.idempotent:
                    raise self._error(Uncertain, f"{last_problem}; it may or may not have been applied", ep,
                                      status=status, retryable=True)
                self._backoff(attempt, ep, last_problem)
                attempt += 1
                continue
            if 200 <= status < 300 or status in ok_statuses:
                if gate is not None and record_items:
                    gate.record(item_keys)
                return reply
            if ep.group in self.map.groups and self.map.groups[ep.group].error_cost > 1:
                group.penalize(self.map.groups[ep.group].error_cost - 1)
            snippet = self.scrub(content[:300].decode("utf-8", "replace"))
            native: Any = None
            try:
                native = jsonlib.loads(self.scrub(content.decode("utf-8", "replace"))) if content else None
            except ValueError:
                native = snippet
            if status in (401, 403):
                raise self._error(AuthError, f"HTTP {status}: access refused: {snippet}", ep, status=status,
                                  native=native)
            raise self._error(MarketplaceError, f"HTTP {status}: {snippet}", ep, status=status, native=native)
        if last_problem.endswith("too many requests"):
            raise self._error(RateLimited, f"still throttled after {attempt + waits} attempts", ep,
                              status=int(last_problem.split()[1]), retryable=True)
        if last_problem.startswith("the answer was cut short"):
            raise self._error(BadResponse, f"gave up after {self.retry.attempts} attempts: {last_problem}", ep)
        raise self._error(MarketplaceError, f"gave up after {self.retry.attempts} attempts: {last_problem}", ep,
                          retryable=True)

    def _backoff(self, attempt: int, ep: Endpoint, problem: str) -> None:
        if attempt + 1 >= self.retry.attempts:
            return
        wait = self.retry.backoff(attempt, self._rng) / self.time_scale
        self.stats.retries += 1
        log.warning("%s %s: %s, retrying in %.3fs (attempt %d)", self.account, ep.name, problem, wait, attempt + 1)
        self._sleep(wait)

    def settle(self, attempt: int) -> None:
        """Wait before reading back a change whose answer was lost (timeout, 5xx): the request may still
        be landing on the marketplace, and re-sending too soon could find the old state and send again."""
        self._sleep(self.retry.backoff(attempt, self._rng) / self.time_scale)

    def _scrub_body(self, body: bytes | None) -> bytes | None:
        """The body with credential values masked (Megamarket sends its token inside the body)."""
        if not body or not self._secrets:
            return body
        text = body.decode("utf-8", "replace")
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text.encode("utf-8")

    def _notify(self, ep: Endpoint, path: str, params: dict[str, Any] | None, headers: dict[str, str],
                body: bytes | None, reply: Reply, *, documented: bool = True) -> None:
        if not EXCHANGE_HOOKS:
            return
        masked = {k: ("***" if v in self._secrets else v) for k, v in headers.items()}
        ex = Exchange(self.map.marketplace, self.account, ep.name, ep.method, path, dict(params or {}), masked,
                      self._scrub_body(body), reply.status, dict(reply.headers), reply.content, reply.headers.get("content-type", ""),
                      documented)
        for hook in list(EXCHANGE_HOOKS):
            hook(ex)


def in_parallel(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int = 4) -> list[Any]:
    """`[fn(t) for t in tasks]`, up to `workers` at a time, in order. The buckets still pace every
    request; running a few at once only keeps the marketplace's own latency from eating the rate."""
    if workers <= 1 or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    urgent = urgent_var.get()

    def run(task: Any) -> Any:  # the caller's urgency goes with its requests
        if not urgent:
            return fn(task)
        token = urgent_var.set(True)
        try:
            return fn(task)
        finally:
            urgent_var.reset(token)
    with ThreadPoolExecutor(max_workers=min(workers, len(tasks)), thread_name_prefix="push") as pool:
        return list(pool.map(run, tasks))


def batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    """`items` in consecutive slices of at most `size` (all at once when size is 0)."""
    if size <= 0:
        if items:
            yield items
        return
    for i in range(0, len(items), size):
        yield items[i : i + size]
