"""Delivering a sandbox's pushes (Yandex.Market and Ozon notifications, Megamarket order/new and
order/cancel) to a configured URL, the way the marketplace does: in the background, retried while the
answer is not a success, optionally sent more than once (marketplaces deliver duplicates by design).

Owns: the delivery queue and worker thread, the retry schedule (time-scaled; the marketplace's own
where it documents one: `retry_wait`, `max_attempts`), the delivery log that `/_sandbox/state` shows.
The caller decides what a success is (`accept(status, body) -> bool`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PushTarget:
    """Where and how to push. `url` is the full URL of one push endpoint family; `duplicates` sends
    every event that many extra times; `fail_first` makes the sandbox pretend the first N deliveries of
    each event were lost (to exercise the receiver's idempotence and the retry loop)."""

    url: str = ""
    duplicates: int = 0
    fail_first: int = 0
    max_attempts: int = 6
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivery:
    path: str  # appended to the target url ("/notification", "/order/new")
    payload: dict[str, Any]
    key: str  # the event's identity, for the log
    attempts: int = 0


class PushDelivery:
    """One background worker delivering events to the target, in order, with retries."""

    def __init__(self, accept: Callable[[int, bytes], bool], *, time_scale: float = 1.0,
                 user_agent: str = "marketsync-sandbox", retry_wait: Callable[[int], float] | None = None,
                 max_attempts: int = 6) -> None:
        """`retry_wait(n)`: the marketplace's seconds before the next try after `n` failed ones (default:
        10 s, then doubling, up to 10 minutes); `max_attempts`: its tries per event unless `configure`
        says otherwise."""
        self.accept = accept
        self.time_scale = max(time_scale, 1e-6)
        self.user_agent = user_agent
        self.retry_wait = retry_wait or _doubling_from_10s
        self.max_attempts = max_attempts
        self.target = PushTarget()
        self.log: list[dict[str, Any]] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def configure(self, body: dict[str, Any]) -> PushTarget:
        t = PushTarget(
            url=str(body.get("url") or "").rstrip("/"),
            duplicates=int(body.get("duplicates", 0)),
            fail_first=max(0, int(body.get("fail_first", 0))),
            max_attempts=max(1, int(body.get("max_attempts", self.max_attempts))),
            timeout_s=float(body.get("timeout_s", 10.0)),
            headers={str(k): str(v) for k, v in (body.get("headers") or {}).items()},
        )
        self.target = t
        return t

    def send(self, path: str, payload: dict[str, Any], key: str) -> None:
        """Queue one event (and its configured duplicates); no-op while no URL is configured."""
        if not self.target.url:
            return
        for _ in range(1 + self.target.duplicates):
            self._queue.put(Delivery(path, payload, key))
        self._idle.clear()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-push", daemon=True)
                self._thread.start()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self._idle.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)

    def _post(self, delivery: Delivery) -> tuple[int, bytes]:
        status, body, _ = self.post_now(self.target.url + delivery.path, delivery.payload,
                                        timeout_s=self.target.timeout_s, headers=self.target.headers)
        return status, body

    def post_now(self, url: str, payload: dict[str, Any], *, timeout_s: float = 10.0,
                 headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        """POST one push at once, outside the queue (a connection check): (HTTP status or 0 when no
        answer came, the body or what went wrong, the answer's Content-Type)."""
        data = json.dumps(payload, ensure_ascii=False).encode()
        req = urllib.request.Request(url, data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("User-Agent", self.user_agent)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - configured URL
                return resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")
        except TimeoutError as exc:
            return 0, f"timeout: {exc}".encode(), ""
        except (OSError, ValueError) as exc:
            return 0, str(exc).encode(), ""

    def _run(self) -> None:
        while True:
            try:
                delivery = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._idle.set()
                continue
            if delivery is None:
                self._idle.set()
                return
            while True:
                delivery.attempts += 1
                started = time.monotonic()
                if delivery.attempts <= self.target.fail_first:
                    status, body = 0, b"dropped by the sandbox (fail_first)"  # as if lost on the way
                else:
                    status, body = self._post(delivery)
                ok = self.accept(status, body)
                with self._lock:
                    self.log.append({"key": delivery.key, "path": delivery.path, "attempt": delivery.attempts,
                                     "status": status, "ok": ok,
                                     "ms": round((time.monotonic() - started) * 1000, 1)})
                    del self.log[:-1000]
                if ok or delivery.attempts >= self.target.max_attempts:
                    break
                time.sleep(self.retry_wait(delivery.attempts) / self.time_scale)  # the marketplace's schedule
            if self._queue.empty():
                self._idle.set()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"url": self.target.url, "delivered": sum(1 for e in self.log if e["ok"]),
                    "failed_attempts": sum(1 for e in self.log if not e["ok"]), "log": list(self.log[-50:])}


def _doubling_from_10s(failed: int) -> float:
    """10 s, then doubling, up to 10 minutes, like Market's old push API."""
    return min(600.0, 10.0 * 2 ** (failed - 1))
