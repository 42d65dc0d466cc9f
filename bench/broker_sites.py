"""Benchmark: how many sites one regional broker holds (the deployment guide's sizing).

For each size in `--sizes`, brokers are set up as in production (TLS, a password per site, the ACL of
directions, signed envelopes): a regional Mosquitto bridged to the central one, one cloud link on the
central broker. The sites are real `SiteLink`s (each its own SQLite outbox with `--per-site` stock changes
waiting), `LINKS_PER_PROCESS` to a process, all started at once. Measured on the regional broker:

  connect   seconds from starting the sites until every one is connected and the cloud has applied all
            their messages (TLS handshakes and the outboxes' first flush through the bridge);
  memory    the broker's resident memory (VmRSS) with every site connected, beside the same broker
            with none (the baseline of the same run), and so the memory per site;
  idle CPU  the broker's CPU over `--idle` seconds with every site connected and nothing to send
            (keep-alives only), beside the same broker with none;
  restart   the regional broker stopped (SIGTERM) and started again: seconds until every site is
            connected again (counted in the broker's own log of connects), and the messages applied
            twice (0: the link's exactly-once holds across the restart).

`--broker-nofile N` gives the regional broker a soft limit of N open files (`prlimit`), as Debian's
mosquitto.service leaves it (systemd's default, 1024) unless a drop-in raises it
(systemd/mosquitto/limits.conf): sites past the limit then never connect, and the bench says so.

The sites' processes run on the same two cores as the brokers, so `connect` and `restart` are upper
bounds for the broker (each site process handles 100 TLS handshakes in turn). Last line:
`sites=N broker_mb=X baseline_mb=B kb_per_site=K idle_cpu_pct=C baseline_idle_cpu_pct=D connect_s=S
reconnect_s=R duplicates=0` for the largest size.

    .venv/bin/python bench/broker_sites.py [--sizes 500,1000] [--per-site 2] [--idle 20]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marketsync.broker import Broker  # noqa: E402
from sitelink import sqlite  # noqa: E402
from sitelink.bridge_config import bridge_conf, central_acl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib.sites import LINKS_PER_PROCESS, delta, fill_outbox, spawn_child, stop_child, wait_ready  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTED = re.compile(r"New client connected from \S+ as (site-\d+)")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def idle_cpu_pct(pid: int, seconds: float) -> float:
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_s(pid) - c0) / (time.monotonic() - t0)


def limit_files(broker: Broker, nofile: int) -> None:
    if nofile and broker.proc is not None:
        subprocess.run(["prlimit", f"--pid={broker.proc.pid}", f"--nofile={nofile}:{nofile}"], check=True)


def connected_since(log: Path, offset: int) -> set[str]:
    with open(log, "rb") as fh:
        fh.seek(offset)
        return set(CONNECTED.findall(fh.read().decode(errors="replace")))


def applied(db: Path) -> tuple[int, int]:
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute("SELECT COUNT(*), COUNT(*) - COUNT(DISTINCT key) FROM applied").fetchone()
    finally:
        c.close()


def wait_until(what: str, cond, timeout: float) -> float:  # noqa: ANN001
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(what)
        time.sleep(0.1)
    return time.monotonic() - t0


def one_size(n: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    sites = [f"site-{i}" for i in range(1, n + 1)]
    password = secrets.token_urlsafe(18)
    central = Broker(workdir=work / "central", secure=True, sites=sites, passwords={"bridge-r1": password},
                     extra_acl=central_acl("r1", sites))
    central.start()
    regional = Broker(workdir=work / "regional", secure=True, sites=sites,
                      extra_conf=bridge_conf("r1", sites, central_host=central.host, central_port=central.port,
                                             password=password, central_ca=str(central.ca_file)))
    regional.start()
    limit_files(regional, args.broker_nofile)
    cloud_db = work / "cloud.db"
    conn = sqlite.connect(cloud_db)
    conn.execute("CREATE TABLE applied (key TEXT)")
    conn.close()
    cfgs = []
    for s in sites:
        cfg = {"role": "site", "site_id": s, "db_path": str(work / f"{s}.db"),
               **regional.link_settings(s, keys_from=central)}
        fill_outbox(cfg, args.per_site, lambda j, s=s: delta(j, s))
        cfgs.append(cfg)
    procs = []
    out: dict[str, float] = {"sites": n}
    try:
        procs.append(spawn_child({"role": "cloud", "links": [{"role": "cloud", "db_path": str(cloud_db),
                                                              **central.link_settings()}]}))
        wait_ready(procs[0])
        time.sleep(2.0)  # the bridge is up
        assert regional.proc is not None
        pid = regional.proc.pid
        out["baseline_mb"] = rss_mb(pid)
        out["baseline_idle_cpu_pct"] = idle_cpu_pct(pid, args.idle)
        log_at = regional.log_path.stat().st_size
        t0 = time.monotonic()
        children = [spawn_child({"role": "sites", "links": cfgs[i:i + LINKS_PER_PROCESS]})
                    for i in range(0, n, LINKS_PER_PROCESS)]
        procs += children
        total = n * args.per_site
        try:
            wait_until("every site connected and applied", lambda: applied(cloud_db)[0] >= total, args.timeout)
        except TimeoutError:
            got = len(connected_since(regional.log_path, log_at))
            print(f"  {n} sites: only {got} connected to the regional broker in {args.timeout:.0f} s"
                  f" ({applied(cloud_db)[0]} of {total} messages applied); its log says:"
                  f" {_last_error(regional.log_path)}", flush=True)
            out["connected"] = got
            return out
        for c in children:
            wait_ready(c)
        out["connect_s"] = time.monotonic() - t0
        time.sleep(2.0)  # the last acknowledgements and outbox deletes settle
        out["broker_mb"] = rss_mb(pid)
        out["idle_cpu_pct"] = idle_cpu_pct(pid, args.idle)
        log_at = regional.log_path.stat().st_size
        t1 = time.monotonic()
        regional.restart()
        limit_files(regional, args.broker_nofile)
        wait_until("every site reconnected", lambda: len(connected_since(regional.log_path, log_at)) >= n,
                   args.timeout)
        out["reconnect_s"] = time.monotonic() - t1
        out["duplicates"] = applied(cloud_db)[1]
        return out
    finally:
        for p in reversed(procs):
            stop_child(p)
        regional.close()
        central.close()


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "rror" in ln or "Too many" in ln]
    return lines[-1][:200] if lines else "no error logged"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="500,1000", help="numbers of sites, one run each")
    p.add_argument("--per-site", type=int, default=2, help="stock changes waiting in each site's outbox")
    p.add_argument("--idle", type=float, default=20.0, help="seconds over which the idle CPU is measured")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--broker-nofile", type=int, default=0,
                   help="the regional broker's open-files limit (0: as this shell's; Debian's unit: 1024)")
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {LINKS_PER_PROCESS} sites"
          f" per process; regional broker's open-files limit: {args.broker_nofile or 'inherited'}", flush=True)
    last: dict[str, float] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"bench-broker-{n}-") as tmp:
            r = one_size(n, args, Path(tmp))
        if "broker_mb" not in r:
            continue
        per_site_kb = (r["broker_mb"] - r["baseline_mb"]) * 1024 / n
        print(f"  {n:5} sites: all connected and applied in {r['connect_s']:.1f} s; broker {r['broker_mb']:.1f} MB"
              f" (baseline {r['baseline_mb']:.1f} MB with none: {per_site_kb:.0f} KB per site); idle CPU"
              f" {r['idle_cpu_pct']:.2f} % (baseline {r['baseline_idle_cpu_pct']:.2f} %); after a restart every"
              f" site back in {r['reconnect_s']:.1f} s; applied twice: {r['duplicates']:.0f}", flush=True)
        last = {**r, "kb_per_site": per_site_kb}
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not last:
        print("sites=0 broker_mb=0 baseline_mb=0 kb_per_site=0 idle_cpu_pct=0 baseline_idle_cpu_pct=0"
              " connect_s=0 reconnect_s=0 duplicates=0")
        return
    print(f"sites={last['sites']:.0f} broker_mb={last['broker_mb']:.1f} baseline_mb={last['baseline_mb']:.1f}"
          f" kb_per_site={last['kb_per_site']:.0f} idle_cpu_pct={last['idle_cpu_pct']:.2f}"
          f" baseline_idle_cpu_pct={last['baseline_idle_cpu_pct']:.2f} connect_s={last['connect_s']:.1f}"
          f" reconnect_s={last['reconnect_s']:.1f} duplicates={last['duplicates']:.0f}")


if __name__ == "__main__":
    main()
