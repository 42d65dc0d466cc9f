"""`marketsync soak`: the demo's seller's day under faults injected from outside, then judged from outside.

It runs the demo (`marketsync.demo.Demo`: its own Mosquitto, the four sandboxes, the cloud, one site
with the simulated packer) and, from another thread, hurts it the way a bad day does: SIGKILL and
SIGSTOP/SIGCONT of the edge, the broker and the cloud (one long absence of the edge among them, and an
edge killed the moment a label file appears), and on the real broker malformed, verbatim-replayed,
seq-changed and reordered messages (`marketsync.soak_link`). Every fault goes to `faults.log` in the
soak folder and to the screen. Then a quiet drain: no faults, no new orders, couriers keep coming until
every order is final on its marketplace and both outboxes are empty (or `--drain` seconds pass).
Then `marketsync.soak_judge` reads the sandboxes, the SQLite files and the printed labels and says what
went wrong, each count explained with ids; the LAST line is one JSON object
{"orders", "lost", "duplicated", "stuck", "mislisted", "labels_twice", "faults"}. Exit code 1 when
any defect was found, 2 when the soak itself could not run as planned (a service that would not come back
after its fault is named above the last line).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from babel import Locale

from cloud_sync import db
from marketsync.broker import free_port
from marketsync.demo import MARKETPLACES, Demo, Stop, http_json
from marketsync.demo_config import SITE_ID
from marketsync.procs import Service, ServiceFailed
from marketsync.soak_judge import Verdict, gather, judge, order_finals, summary_line
from marketsync.soak_link import LinkMeddler, wait_connected

RUSSIAN = Locale("ru")

SOAK_USER = "soak"  # the fault injector's own broker identity (read and write on every link topic)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marketsync soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of faults and orders (default 600)")
    parser.add_argument("--drain", type=float, default=150, help="at most this many quiet seconds after them")
    parser.add_argument("--workdir", default="var/soak", help="where the soak keeps its files (emptied first)")
    parser.add_argument("--seed", type=int, default=15, help="the faults' random seed")
    parser.add_argument("--items", type=int, default=40, help="items in the demo catalog")
    parser.add_argument("--order-every", type=float, default=3.0, help="seconds between new orders")
    parser.add_argument("--courier-every", type=float, default=20.0, help="seconds between couriers")
    parser.add_argument("--time-scale", type=float, default=1.0, help="the marketplaces' limits K times faster")
    args = parser.parse_args(argv)
    soak = Soak(args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, soak.on_signal)
    verdict: Verdict | None = None
    try:
        soak.start()
        soak.run()
        verdict = soak.judge()
    except Stop:
        soak.note("stopped before the end: no verdict")
    except ServiceFailed as exc:
        soak.note(f"the demo could not start: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        soak.stop()
    if verdict is None:
        return 2
    for line in verdict.lines:
        print(line, flush=True)
    for error in soak.errors:  # the run itself went wrong: its verdict may be incomplete
        print(f"прогон: {error}", flush=True)
    if verdict.clean and not soak.errors:
        print(f"без дефектов: {_counted(verdict.counts['orders'], 'заказ', 'заказа', 'заказов')},"
              f" {_counted(verdict.counts['faults'], 'сбой', 'сбоя', 'сбоев')}", flush=True)
    print(summary_line(verdict), flush=True)
    return 2 if soak.errors else 0 if verdict.clean else 1


def _counted(n: int, one: str, few: str, many: str) -> str:
    """«94 заказа», «1 сбой», «35 сбоев»: the count with the word in its Russian plural form."""
    return f"{n} " + {"one": one, "few": few}.get(RUSSIAN.plural_form(n), many)


class SoakDemo(Demo):
    """The demo as the soak runs it: its running commentary goes to demo.log, and a service the soak
    has taken down on purpose is not reported as stopped unexpectedly."""

    def __init__(self, args: argparse.Namespace, chatter: Path) -> None:
        super().__init__(args)
        self.chatter_path = chatter
        self.chatter: Any = None
        self.down: set[str] = set()  # services the soak holds down or paused right now

    def say(self, text: str) -> None:
        if self.chatter is None:
            self.chatter_path.parent.mkdir(parents=True, exist_ok=True)
            self.chatter = open(self.chatter_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in Soak.stop
        self.chatter.write(f"[{time.monotonic() - self.started:7.1f}s] {text}\n")
        self.chatter.flush()

    def check_services(self) -> None:
        for svc in self.services:
            if svc.name not in self.down and not svc.alive:
                self.say(f"{svc.name} is not running and the soak did not stop it; see {svc.log_path}")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir).resolve()
        demo_args = argparse.Namespace(duration=0, workdir=str(self.work / "demo"), items=args.items,
                                       order_every=args.order_every, courier_every=args.courier_every,
                                       time_scale=args.time_scale, marketplaces=",".join(MARKETPLACES))
        self.demo = SoakDemo(demo_args, self.work / "demo.log")
        self.demo.broker_observers = [SOAK_USER]
        self.demo.cloud_port = free_port()
        self.rng = random.Random(args.seed)
        self.meddler: LinkMeddler | None = None
        self.faults = 0
        self.fault_log: Any = None
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.day_started = self.started  # when orders and faults begin (after the demo is up)
        self.errors: list[str] = []
        self._stopping = False
        self._print_kills = 0  # edge kills on a label file so far (they alternate: during / after the write)

    # ------------------------------------------------------------------ plumbing

    def on_signal(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            self._stopping = True
            self.stopping.set()
            raise Stop()

    def note(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] {text}"
        print(line, flush=True)
        if self.fault_log is not None:
            self.fault_log.write(line + "\n")
            self.fault_log.flush()

    def fault(self, text: str, n: int = 1) -> None:
        """Log one fault injected (`n`: messages it published, each counted)."""
        self.faults += n
        self.note(f"fault #{self.faults}: {text}")

    def service(self, name: str) -> Service:
        return next(s for s in self.demo.services if s.name == name)

    # ------------------------------------------------------------------ start / stop

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.fault_log = open(self.work / "faults.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in stop
        self.note(f"soak folder {self.work}: faults.log, demo.log, demo/ (logs, databases, labels)")
        self.demo.start()
        assert self.demo.broker is not None
        link = self.demo.broker.link_settings(SOAK_USER)  # its own identity: it takes over nobody's session
        self.meddler = LinkMeddler(host=link["host"], port=link["port"], username=link["username"],
                                   password=link["password"], tls_ca=link.get("tls_ca"), site=SITE_ID,
                                   rng=random.Random(self.args.seed + 1))
        if not wait_connected(self.meddler):
            raise ServiceFailed("the soak could not connect to the demo's broker")
        self.note(f"demo up: cloud {self.demo.cloud_url}, site {self.demo.edge_url}, "
                  f"broker {link['host']}:{link['port']}")

    def stop(self) -> None:
        self.stopping.set()
        self.resume_all()
        if self.meddler is not None:
            self.meddler.close()
        try:
            self.demo.stop()
        finally:
            if self.demo.chatter is not None:
                self.demo.chatter.close()
            self.note(f"stopped everything; files kept in {self.work}")
            if self.fault_log is not None:
                self.fault_log.close()
                self.fault_log = None

    # ------------------------------------------------------------------ the day and the drain

    def run(self) -> None:
        duration = self.args.duration
        self.day_started = time.monotonic()  # a slow start does not eat into the day
        injector = threading.Thread(target=self.inject, args=(self.day_started + duration,), name="faults", daemon=True)
        injector.start()
        self.note(f"orders and faults for {duration:.0f} s")
        self.demo_loop(until=self.day_started + duration, orders=True)
        self.stopping.set()
        injector.join(timeout=180)
        self.resume_all()
        self.note(f"faults over ({self.faults}); quiet drain of at most {self.args.drain:.0f} s, couriers keep coming")
        drain_end = time.monotonic() + self.args.drain
        while time.monotonic() < drain_end:
            self.demo_loop(until=min(drain_end, time.monotonic() + 10), orders=False)
            waiting = self.still_waiting()
            if not waiting:
                self.note("quiet: every order is final on its marketplace, outboxes and push queue empty")
                break
        else:
            self.note(f"drain over, still waiting: {waiting}")
        self.demo_loop(until=time.monotonic() + 3, orders=False)

    def demo_loop(self, until: float, orders: bool) -> None:
        """The demo's day (`Demo.tick`): orders arrive (when `orders`), couriers come, events told."""
        while time.monotonic() < until:
            if self._stopping:
                raise Stop()
            self.demo.tick(new_orders=orders)
            time.sleep(0.5)

    def still_waiting(self) -> str:
        """What the drain still waits for, in a few words ('' when quiet)."""
        out = []
        try:
            pending = 0
            for _account, info in self.demo.sandboxes.items():
                state = http_json("GET", info["url"].rstrip("/") + "/_sandbox/state", timeout=30)
                pending += sum(1 for f in order_finals(info["marketplace"], state).values() if f is None)
            if pending:
                out.append(f"{pending} order(s) not final")
            for name, path, sql in (
                ("cloud outbox", self.demo.cloud_db, "SELECT COUNT(*) FROM link_outbox"),
                ("site outbox", self.site_db, "SELECT COUNT(*) FROM link_outbox"),
                ("stock pushes", self.demo.cloud_db, "SELECT COUNT(*) FROM stock_push_queue WHERE state='pending'"),
            ):
                with closing(db.connect_readonly(path)) as conn:  # the cloud's store: SQLite or PostgreSQL
                    n = conn.execute(sql).fetchone()[0]
                if n:
                    out.append(f"{n} in {name}")
        except (OSError, sqlite3.Error) as exc:
            out.append(f"cannot look: {exc}")
        return ", ".join(out)

    @property
    def site_db(self) -> Path:
        return self.demo.work / SITE_ID / "site.sqlite"

    def judge(self) -> Verdict:
        assert self.meddler is not None
        self.note("judging from outside: sandboxes, SQLite files (read-only), decoded labels")
        ev = gather(sandboxes={acc: info["url"] for acc, info in self.demo.sandboxes.items()},
                    accounts={acc: info["marketplace"] for acc, info in self.demo.sandboxes.items()}, cloud_db=self.demo.cloud_db, site_db=self.site_db,
                    labels_dir=self.demo.labels_dir, injected_malformed=self.meddler.expected_dead_letters(),
                    faults=self.faults)
        (self.work / "evidence.json").write_text(json.dumps(_plain(ev.__dict__), ensure_ascii=False, indent=1))
        return judge(ev)

    # ------------------------------------------------------------------ the faults

    def inject(self, until: float) -> None:
        """The fault thread: one fault at a time, a few seconds apart, until `until`; one long absence of
        the edge a third of the way in."""
        kinds: list[Callable[[], None]] = [  # every kind comes once in the first two minutes
            self.kill_edge_on_print, self.malformed, self.pause_cloud, self.seq_replay, self.kill_broker,
            self.reorder, self.kill_cloud, self.replay, self.pause_edge, self.malformed, self.pause_broker,
            self.kill_edge, self.seq_replay, self.kill_edge_on_print, self.replay,
        ]
        absence_at = self.day_started + self.args.duration / 3
        absence_done = False
        i = 0
        try:
            self.wait(min(10.0, self.args.duration / 10))
            while not self.stopping.is_set() and time.monotonic() < until - 5:
                if not absence_done and time.monotonic() >= absence_at:
                    absence_done = True
                    self.edge_absence(min(90.0, max(20.0, self.args.duration * 0.15)))
                else:
                    kinds[i % len(kinds)]()
                    i += 1
                self.wait(self.rng.uniform(2, 4) if self.args.duration < 300 else self.rng.uniform(3, 8))
        except Exception as exc:  # noqa: BLE001 - reported, the soak goes on to its judge
            self.note(f"the fault thread failed: {type(exc).__name__}: {exc}")
            self.errors.append(f"сбои перестали вноситься: {type(exc).__name__}: {exc}")
        finally:
            self.resume_all()

    def wait(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def _pid(self, name: str) -> int | None:
        if name == "broker":
            b = self.demo.broker
            return b.proc.pid if b is not None and b.proc is not None and b.proc.poll() is None else None
        svc = self.service(name)
        return svc.proc.pid if svc.alive and svc.proc is not None else None

    def _signal(self, name: str, sig: int) -> None:
        pid = self._pid(name)
        if pid is None:
            return
        try:
            if name == "broker":
                os.kill(pid, sig)
            else:
                os.killpg(pid, sig)  # the service and any child of it
        except ProcessLookupError:
            pass

    def kill(self, name: str, down_for: float, why: str = "") -> None:
        self.demo.down.add(name)
        if name == "broker":
            assert self.demo.broker is not None
            self.demo.broker.kill()
        else:
            self._signal(name, signal.SIGKILL)
            svc = self.service(name)
            if svc.proc is not None:
                svc.proc.wait(10)
        self.fault(f"SIGKILL {name}{why}, back in {down_for:.0f} s")
        self.wait(down_for)
        self.restart(name)

    def restart(self, name: str) -> None:
        for attempt in range(5):
            try:
                if name == "broker":
                    assert self.demo.broker is not None
                    self.demo.broker.start()
                else:
                    self.service(name).start(timeout=90)
                self.demo.down.discard(name)
                self.note(f"{name} running again")
                return
            except (ServiceFailed, OSError) as exc:
                self.note(f"{name} did not come back (attempt {attempt + 1}): {str(exc).splitlines()[0]}")
                time.sleep(2)
        self.errors.append(f"{name} не запустился снова после сбоя (см. {self.work / 'demo' / 'logs'})")

    def pause(self, name: str, seconds: float) -> None:
        self.demo.down.add(name)
        self._signal(name, signal.SIGSTOP)
        self.fault(f"SIGSTOP {name} for {seconds:.0f} s")
        self.wait(seconds)
        self._signal(name, signal.SIGCONT)
        self.demo.down.discard(name)

    def resume_all(self) -> None:
        for name in ("broker", "cloud", f"edge-{SITE_ID}"):
            try:
                self._signal(name, signal.SIGCONT)
            except StopIteration:
                pass
        for name in list(self.demo.down):
            if name in ("broker", "cloud", f"edge-{SITE_ID}") and self._pid(name) is None and not self._stopping:
                self.restart(name)
        self.demo.down.clear()

    @property
    def edge(self) -> str:
        return f"edge-{SITE_ID}"

    def kill_edge(self) -> None:
        self.kill(self.edge, self.rng.uniform(1, 6))

    def kill_cloud(self) -> None:
        self.kill("cloud", self.rng.uniform(1, 5))

    def kill_broker(self) -> None:
        self.wait(6)  # Mosquitto saves its queues every 5 s: what we injected is on its disk first
        self.kill("broker", self.rng.uniform(1, 5))

    def pause_edge(self) -> None:
        self.pause(self.edge, self.rng.uniform(3, self.longest_pause))

    def pause_cloud(self) -> None:
        self.pause("cloud", self.rng.uniform(3, self.longest_pause))

    def pause_broker(self) -> None:
        self.pause("broker", self.rng.uniform(3, self.longest_pause))

    @property
    def longest_pause(self) -> float:
        return 8.0 if self.args.duration < 300 else 15.0

    def edge_absence(self, seconds: float) -> None:
        self.kill(self.edge, seconds, " (a long absence)")

    def kill_edge_on_print(self) -> None:
        """SIGKILL the edge the moment a label file appears: in turn while the printer writes it (its
        `.part` file is there) and right after (between the printer's write and the job marked done)."""
        self._print_kills += 1
        suffix = ".png.part" if self._print_kills % 2 == 0 else ".png"
        labels = self.demo.labels_dir

        def files() -> set[str]:
            try:
                return {e.name for e in os.scandir(labels) if e.name.endswith(suffix)}
            except OSError:
                return set()

        def changed_at() -> int:  # the folder's mtime moves when a file is created or renamed in it
            try:
                return os.stat(labels).st_mtime_ns
            except OSError:
                return 0

        before, seen_at = files(), changed_at()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.stopping.is_set():
            now_at = changed_at()
            if now_at != seen_at:
                seen_at = now_at
                new = files() - before
                if new:
                    when = "while it wrote" if suffix.endswith(".part") else "right after it printed"
                    self.kill(self.edge, self.rng.uniform(1, 4), f" {when} {sorted(new)[0]}")
                    return
            time.sleep(0.0005)
        self.kill(self.edge, self.rng.uniform(1, 4), " (no label came within 30 s)")

    def _link_fault(self, make: Callable[[], str | None], copies: int = 1) -> None:
        if self.demo.down:
            return
        assert self.meddler is not None
        for _ in range(copies):
            before = self.meddler.sent
            what = make()
            if what:
                self.fault(what, self.meddler.sent - before)
        self.wait(4)  # the receiver commits its dead letter / inbox before the next kill

    def malformed(self) -> None:
        assert self.meddler is not None
        self._link_fault(self.meddler.malformed_message, copies=self.rng.randint(1, 3))

    def replay(self) -> None:
        assert self.meddler is not None
        self._link_fault(self.meddler.verbatim_replay, copies=self.rng.randint(1, 3))

    @property
    def ahead_ok(self) -> bool:
        """Replays moved ahead of the real stream only in the first 70 % of the day: the real messages
        must still come to fill the seqs before them, or the receiver rightly shows a gap."""
        return time.monotonic() < self.day_started + 0.7 * self.args.duration

    def seq_replay(self) -> None:
        assert self.meddler is not None
        meddler, ahead = self.meddler, self.ahead_ok
        self._link_fault(lambda: meddler.seq_changed_replay(ahead=ahead), copies=self.rng.randint(1, 2))

    def reorder(self) -> None:
        assert self.meddler is not None
        meddler, ahead = self.meddler, self.ahead_ok
        self._link_fault(lambda: meddler.reordered_replay(ahead=ahead))


def _plain(value: Any) -> Any:
    """The evidence as JSON (tuple keys joined by '|'), kept next to the verdict for whoever checks it."""
    if isinstance(value, dict):
        return {("|".join(map(str, k)) if isinstance(k, tuple) else str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
