"""marketplaces.http: pacing, retries, retry headers, typed errors, defensive parsing.

A scripted HTTP server (real sockets on 127.0.0.1) answers each request with the next canned raw
reply, so the client is tested against real HTTP including broken answers no framework would send.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from marketplaces.base import (
    AccountConfig,
    AuthError,
    BadResponse,
    InvalidRequest,
    MarketplaceError,
    RateLimited,
    Uncertain,
)
from marketplaces.endpoints import EndpointMapError, ItemRule, load_endpoint_map, parse_endpoint_map
from marketplaces.http import HttpClient, ItemGate, RetryPolicy, TokenBucket, retry_after_seconds

SECRET = "sekret-token-123456"

MAP = {
    "families": {"main": "https://example.invalid"},
    "groups": {
        "fast": {"rate": 1000.0, "burst": 100},
        "wb": {"rate": 0.01, "burst": 100, "error_cost": 10},
    },
    "endpoints": {
        "read": {"method": "GET", "path": "/read", "family": "main", "group": "fast"},
        "write": {"method": "POST", "path": "/write", "family": "main", "group": "fast", "idempotent": False},
        "upsert": {"method": "POST", "path": "/upsert/{id}", "family": "main", "group": "wb", "idempotent": True},
    },
}


class Scripted:
    """Replies, in order, with raw HTTP responses; records the requests it got."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                script.seen.append((self.command, self.path, dict(self.headers), body))
                raw = script.replies.pop(0) if script.replies else reply(200, b"{}")
                self.wfile.write(raw)
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(status: int, body: bytes, *, ctype: str = "application/json", headers: dict[str, str] | None = None,
          length: int | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}", f"Content-Length: {len(body) if length is None else length}",
            "Connection: close"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
def server() -> Iterator[Scripted]:
    s = Scripted()
    yield s
    s.stop()


def client_for(server: Scripted, *, time_scale: float = 100.0, overrides: dict | None = None, **kw) -> HttpClient:
    config = AccountConfig(name="acc-1", marketplace="testmarket", base_url=server.url,
                           credentials={"Authorization": SECRET}, time_scale=time_scale)
    emap = parse_endpoint_map("testmarket", MAP, overrides)
    return HttpClient(config, emap, auth=lambda h: h.update(config.credentials), retry=RetryPolicy(attempts=4),
                      timeout_s=2.0, seed=1, **kw)


def test_token_bucket_gives_the_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(3):
        assert bucket.acquire() == 0.0
    waited = [bucket.acquire() for _ in range(4)]
    assert waited == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert now[0] == pytest.approx(2.0)


def test_item_counted_requests_take_half_the_bucket_so_late_wakeups_are_not_lost() -> None:
    """Where a limit counts items (Yandex.Market: SKUs per minute), a request as big as the whole bucket
    waits for a full bucket, and a full bucket stops filling: each late wake-up of the sender is lost.
    At half the bucket a late wake-up is absorbed and the push ends at the documented ceiling."""
    emap = parse_endpoint_map("testmarket", {
        "families": {"main": "https://example.invalid"},
        "groups": {"items": {"rate": 1000.0, "burst": 2000}},
        "endpoints": {"push": {"method": "POST", "path": "/push", "family": "main", "group": "items",
                               "batch": 2000}},
    })
    config = AccountConfig(name="acc-1", marketplace="testmarket", base_url="https://example.invalid")
    size = HttpClient(config, emap).item_batch("push")
    assert size == 1000
    now = [0.0]
    late = 0.02  # the sender wakes up 20 ms after the moment it asked for, every time
    bucket = TokenBucket(rate=1000.0, burst=2000, clock=lambda: now[0],
                         sleep=lambda s: now.__setitem__(0, now[0] + s + late))
    for _ in range(100_000 // size):
        bucket.acquire(size)
    assert now[0] <= (100_000 - 2000) / 1000 + late  # the floor, and one late wake-up


def test_item_gate_allows_max_per_window() -> None:
    now = [100.0]
    gate = ItemGate(ItemRule("pair", window_s=30, max=1), time_scale=1.0, clock=lambda: now[0])
    assert gate.delay(["a"]) == 0
    gate.record(["a"])
    assert gate.delay(["a"]) == pytest.approx(30)
    assert gate.delay(["b"]) == 0
    now[0] += 31
    assert gate.delay(["a"]) == 0


def test_retry_headers_are_read_in_marketplace_seconds() -> None:
    assert retry_after_seconds({"x-ratelimit-retry": "3"}) == 3
    assert retry_after_seconds({"retry-after": "2"}) == 2
    assert retry_after_seconds({"x-ratelimit-reset": "1.5"}) == 1.5
    assert retry_after_seconds({}) is None


def test_429_is_retried_after_the_wait_the_marketplace_names(server: Scripted) -> None:
    server.replies = [reply(429, b'{"title":"too many requests"}', headers={"X-Ratelimit-Retry": "5"}),
                      reply(200, b'{"ok": true}')]
    client = client_for(server, time_scale=50.0)
    started = time.monotonic()
    assert client.call("read").json() == {"ok": True}
    assert time.monotonic() - started >= 5 / 50 * 0.9
    assert client.stats.throttled == 1 and len(server.seen) == 2


def test_429s_that_name_a_wait_do_not_use_up_the_attempts(server: Scripted) -> None:
    """Pacing answers (429 + Retry-After) between server errors: the request still goes through, where
    counting them as failures gave up after `attempts` answers; endless pacing still ends, as RateLimited."""
    pace = reply(429, b'{"title":"too many requests"}', headers={"Retry-After": "1"})
    server.replies = [pace, reply(503, b"{}"), pace, pace, reply(503, b"{}"), pace, pace, reply(200, b'{"ok": true}')]
    client = client_for(server)  # attempts=4: two failures and five pacing answers
    assert client.call("read").json() == {"ok": True}
    assert len(server.seen) == 8 and client.stats.throttled == 5
    client.retry = RetryPolicy(attempts=4, throttled_waits=3)
    server.replies = [pace] * 10
    before = len(server.seen)
    with pytest.raises(RateLimited, match="still throttled after 7 attempts"):
        client.call("read")
    assert len(server.seen) - before == 7  # 3 waits as asked, then the 4 counted attempts


def test_5xx_retried_for_idempotent_but_uncertain_for_a_status_change(server: Scripted) -> None:
    server.replies = [reply(503, b"{}"), reply(502, b"<html>bad gateway</html>", ctype="text/html"),
                      reply(200, b'{"n": 1}')]
    client = client_for(server)
    assert client.call("read").json() == {"n": 1}
    server.replies = [reply(500, b"{}")]
    with pytest.raises(Uncertain) as err:
        client.call("write", json={"x": 1})
    assert err.value.endpoint == "write" and err.value.account == "acc-1"
    assert len([s for s in server.seen if s[1] == "/write"]) == 1  # never re-sent blindly


def test_html_page_and_malformed_json_are_bad_responses_without_secrets(server: Scripted) -> None:
    client = client_for(server)
    server.replies = [reply(200, b"<html><body>Service Unavailable</body></html>", ctype="text/html")]
    with pytest.raises(BadResponse) as err:
        client.call("read").json()
    assert "account=acc-1" in str(err.value) and "endpoint=read" in str(err.value)
    server.replies = [reply(200, b'{"orders": [{"id": 1,')]
    with pytest.raises(BadResponse):
        client.call("read").json()
    server.replies = [reply(401, json.dumps({"detail": f"token {SECRET} invalid"}).encode())]
    with pytest.raises(AuthError) as auth:
        client.call("read")
    assert SECRET not in str(auth.value) and SECRET not in repr(auth.value.native)


def test_a_body_cut_short_is_a_bad_response(server: Scripted) -> None:
    server.replies = [reply(200, b'{"orders": [', length=400)] * 4
    client = client_for(server)
    with pytest.raises(BadResponse) as err:
        client.call("read")
    assert "cut short" in str(err.value)


def test_payload_refused_before_sending(server: Scripted) -> None:
    def validate(ep, payload) -> None:
        if ep.name == "upsert" and not payload.get("stocks"):
            raise ValueError("stocks must not be empty")

    client = client_for(server, validate=validate)
    with pytest.raises(InvalidRequest) as err:
        client.call("upsert", path_params={"id": 1}, json={"stocks": []})
    assert "stocks must not be empty" in str(err.value)
    assert server.seen == []


def test_a_4xx_costs_the_group_its_error_cost(server: Scripted) -> None:
    server.replies = [reply(409, b'{"code":"NotFound","message":"no"}')]
    client = client_for(server)
    bucket = client.bucket("wb")
    before = bucket.tokens
    with pytest.raises(MarketplaceError) as err:
        client.call("upsert", path_params={"id": 7}, json={"a": 1})
    assert err.value.status == 409
    assert bucket.tokens <= before - 9.9


def test_endpoint_override_moves_a_path_without_code_change(server: Scripted) -> None:
    client = client_for(server, overrides={"read": {"path": "/v9/read"}})
    client.call("read")
    assert server.seen[-1][1] == "/v9/read"
    assert server.seen[-1][2].get("Authorization") == SECRET


def test_an_urgent_call_takes_the_next_token_before_the_calls_waiting_longer():
    """A stock push of a zero jumps the queue of an account's bucket (polls, price pushes wait), and the
    bucket's pace holds all the same: one token per interval, taken at its refill instant."""
    bucket = TokenBucket(rate=10.0, burst=1)
    bucket.acquire()  # the token a poll just took
    order: list[tuple[str, float]] = []
    start = time.monotonic()

    def take(name: str, urgent: bool) -> None:
        bucket.acquire(urgent=urgent)
        order.append((name, time.monotonic() - start))

    slow = [threading.Thread(target=take, args=(f"poll-{i}", False)) for i in range(2)]
    for t in slow:
        t.start()
    time.sleep(0.02)
    zero = threading.Thread(target=take, args=("zero", True))
    zero.start()
    for t in (*slow, zero):
        t.join(5)
    assert [name for name, _ in order][0] == "zero"
    assert order[0][1] >= 0.095  # the next refill instant, not sooner
    gaps = [b - a for (_, a), (_, b) in zip(order, order[1:], strict=False)]
    assert all(g >= 0.095 for g in gaps), gaps  # one token per 0.1 s: the limit holds


def test_an_urgent_call_goes_ahead_of_a_per_second_pace_while_the_second_has_room():
    """Megamarket's "5 requests per second", paced as a bucket of burst 1: a zero does not wait for the
    pace's next token when a poll has just taken it (the last second holds fewer than 5), and every
    window still holds at most the documented count, with urgent and paced calls mixed (simulated clock)."""
    clock = [100.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    bucket = TokenBucket(rate=5.0, burst=1, clock=lambda: clock[0], sleep=sleep, urgent_window=1.0)
    bucket.acquire()  # the token a poll just took
    assert bucket.acquire(urgent=True) == 0.0  # the zero goes at once
    assert bucket.acquire() == pytest.approx(0.4)  # the paced call after it waits for the token it took
    rng = random.Random(7)
    moments = [100.0, 100.0, 100.4]
    for _ in range(400):
        clock[0] += rng.choice((0.0, 0.0, 0.01, 0.05, 0.13, 0.3))
        bucket.acquire(urgent=rng.random() < 0.4)
        moments.append(clock[0])
    assert bucket.ahead > 20  # urgent calls did go ahead of the pace
    worst = max(sum(1 for m in moments if start <= m < start + 1.0) for start in moments)
    assert worst <= 5


def test_an_urgent_window_counts_a_call_from_its_answer_and_one_in_flight_as_now():
    """The marketplace counts a call when it reaches it: an urgent call counts each earlier call from its
    answer (one still in flight as now), never from the moment it was let go."""
    for answered in (0.5, None):
        clock = [0.0]
        bucket = TokenBucket(rate=5.0, burst=1, clock=lambda c=clock: c[0],
                             sleep=lambda s, c=clock: c.__setitem__(0, c[0] + s), urgent_window=1.0)
        _, slow = bucket.acquire_ticket()  # let go at 0
        assert slow is not None and slow[0] == float("inf")  # in flight
        for moment in (0.3, 0.5, 0.7, 0.9):
            clock[0] = moment
            assert bucket.acquire() == 0.0
        if answered is not None:
            slow[0] = answered
        clock[0] = 1.05  # let go more than a second ago, answered (or not) within the last one: 5 in the window
        waited, _ = bucket.acquire_ticket(urgent=True)
        assert waited == pytest.approx(0.05)  # the pace's next token (1.1), not at once
        assert bucket.ahead == 0


def test_an_urgent_window_is_for_a_bucket_of_burst_one_only():
    with pytest.raises(ValueError):
        TokenBucket(rate=20.0, burst=20, urgent_window=1.0)
    with pytest.raises(EndpointMapError):
        parse_endpoint_map("x", {**MAP, "groups": {**MAP["groups"], "fast": {"rate": 5, "burst": 5, "urgent_window_s": 1}}})
    mm = load_endpoint_map("megamarket")
    assert mm.account_limit is not None and mm.account_limit.urgent_window_s == 1.0
    assert mm.account_limit.rate * mm.account_limit.urgent_window_s == 5  # "5 requests per second"
