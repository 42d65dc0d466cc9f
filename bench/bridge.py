"""Benchmark of sites spread over bridged brokers and of cloud processes sharing the sites' traffic.

Each scenario runs on brokers set up as in production (TLS, a password per user, the ACL of directions,
every envelope signed and checked): `--sites` sites (one process holding all their links, each site its
own SQLite outbox) have `--per-site` stock changes each waiting in their outboxes; they connect, and the
time runs until the cloud has applied every message (and until every site's outbox is empty: all
acknowledged). The cloud's links run in processes of their own.

  direct    the sites on the central broker, one cloud link (today's default)      -- the baseline
  bridged   the sites on a regional broker bridged to the central one, one cloud link
  shared    bridged, and three cloud processes as members of the shared subscription (plus the sender)

The bridge speaks MQTT 3.1.1 (Mosquitto 2.0.11's v5 bridge does not connect): the batch MAC (a v5 user
property) does not cross it, so the cloud checks each envelope's own MAC. Last line:
`sites=N msgs=M direct_msg_s=X bridged_msg_s=Y shared_msg_s=Z bridged_to_direct=R`.

usage: python bench/bridge.py [--sites 20] [--per-site 2000] [--only direct,bridged,shared]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marketsync.broker import Broker  # noqa: E402
from sitelink import sqlite  # noqa: E402
from sitelink.bridge_config import bridge_conf, central_acl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib.sites import delta, fill_outbox, outbox_depth, start_child, stop_child  # noqa: E402

GROUP = "ms-cloud"


# ---------------------------------------------------------------- one scenario


def scenario(name: str, n_sites: int, per_site: int, work: Path) -> tuple[float, float]:
    """(seconds until all applied at the cloud, seconds until every site's outbox is empty)."""
    sites = [f"site-{i}" for i in range(1, n_sites + 1)]
    bridged, members = name in ("bridged", "shared"), 3 if name == "shared" else 0
    password = secrets.token_urlsafe(18)
    central = Broker(workdir=work / "central", secure=True, sites=sites, cloud_processes=members,
                     passwords={"bridge-r1": password}, extra_acl=central_acl("r1", sites) if bridged else "")
    central.start()
    regional = None
    if bridged:
        regional = Broker(workdir=work / "regional", secure=True, sites=sites,
                          extra_conf=bridge_conf("r1", sites, central_host=central.host, central_port=central.port,
                                                 password=password, central_ca=str(central.ca_file)))
        regional.start()
    site_broker = regional or central
    cloud_db = work / "cloud.db"
    conn = sqlite.connect(cloud_db)
    conn.execute("CREATE TABLE applied (key TEXT)")
    conn.close()
    common = {"role": "cloud", "db_path": str(cloud_db)}
    site_cfgs = []
    for s in sites:
        db = work / f"{s}.db"
        cfg = {"role": "site", "site_id": s, "db_path": str(db), **site_broker.link_settings(s, keys_from=central)}
        fill_outbox(cfg, per_site, lambda j, s=s: delta(j, s))
        site_cfgs.append(cfg)
    procs = []
    try:
        if members:
            procs.append(start_child({"role": "cloud", "links": [
                {**common, "part": "send", "share_group": GROUP, **central.link_settings()}]}))
            for n in range(1, members + 1):
                procs.append(start_child({"role": "cloud", "links": [
                    {**common, "part": "receive", "share_group": GROUP, **central.link_settings(f"cloud-{n}")}]}))
        else:
            procs.append(start_child({"role": "cloud", "links": [{**common, **central.link_settings()}]}))
        if regional is not None:
            time.sleep(2.0)  # the bridge is up (its first connect may wait for restart_timeout)
        total = n_sites * per_site
        t0 = time.monotonic()
        procs.append(start_child({"role": "sites", "links": site_cfgs}))
        watch = sqlite3.connect(cloud_db, timeout=30)
        while watch.execute("SELECT COUNT(*) FROM applied").fetchone()[0] < total:
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"{name}: not all applied in 600 s")
            time.sleep(0.05)
        t_applied = time.monotonic() - t0
        watch.close()
        while any(outbox_depth(work / f"{s}.db") for s in sites):
            time.sleep(0.05)
        t_acked = time.monotonic() - t0
        dup = _duplicates(cloud_db)
        if dup:
            raise RuntimeError(f"{name}: {dup} messages applied twice")
        return t_applied, t_acked
    finally:
        for p in reversed(procs):
            stop_child(p)
        if regional is not None:
            regional.close()
        central.close()


def _duplicates(db: Path) -> int:
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute("SELECT COUNT(*) - COUNT(DISTINCT key) FROM applied").fetchone()[0]
    finally:
        c.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sites", type=int, default=20)
    p.add_argument("--per-site", type=int, default=2000)
    p.add_argument("--only", default="direct,bridged,shared")
    args = p.parse_args()
    total = args.sites * args.per_site
    print(f"{args.sites} sites x {args.per_site} messages = {total:,}; load average before: {os.getloadavg()[0]:.2f}")
    rates: dict[str, float] = {}
    for name in args.only.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-bridge-{name}-") as tmp:
            applied, acked = scenario(name, args.sites, args.per_site, Path(tmp))
        rates[name] = total / applied
        print(f"{name:8} applied in {applied:6.2f} s ({rates[name]:8,.0f} msg/s), all acknowledged in {acked:6.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    ratio = rates.get("bridged", 0) / rates["direct"] if rates.get("direct") else 0
    print(f"sites={args.sites} msgs={total} direct_msg_s={rates.get('direct', 0):.0f} "
          f"bridged_msg_s={rates.get('bridged', 0):.0f} shared_msg_s={rates.get('shared', 0):.0f} "
          f"bridged_to_direct={ratio:.2f}")


if __name__ == "__main__":
    main()
