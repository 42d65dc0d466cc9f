"""`marketsync demo` as a newcomer runs it: a real run, its summary line, and nothing left behind.

The demo runs as its own process (real broker, four sandboxes, cloud, one site). Afterwards no process
it started may still run: every URL it printed refuses connections and no process still has the demo
folder on its command line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SUMMARY_KEYS = {"orders_seen", "orders_packed", "labels_printed", "stock_pushes", "errors", "orders_oversold",
                "recovered", "delivered", "returned", "restocked", "stuck", "picked_by_bin", "reduced", "tenants",
                "orders_pushed", "deadlines_moved"}
# the evening's «Сверка», and the marketplaces' own-warehouse stock (FBO), its alerts and the cards with the
# marketplaces' fees, and the commission reports, told at the end of the day: only when the day ran to its end
EVENING_KEYS = {"stock_unexplained", "fbo_items", "fbo_alerts", "cards_with_fees", "reports_built", "report_reconciled",
               "report_build_s"}


def _demo(workdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "marketsync.cli", "demo", "--workdir", str(workdir), "--items", "20",
         "--order-every", "1.5", "--time-scale", "10", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _assert_nothing_left(output: str, workdir: Path) -> None:
    ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", output)}
    ports |= {int(p) for p in re.findall(r"on 127\.0\.0\.1:(\d+)", output)}
    assert ports, "the demo printed where its parts listen"
    for port in ports:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert str(workdir) not in cmdline, f"process {pid} is still running: {cmdline}"


def test_demo_runs_a_day_and_ends_with_its_summary(tmp_path: Path):
    workdir = tmp_path / "demo"
    proc = _demo(workdir, "--duration", "30")  # the day, from the first order on: as long at any load
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == SUMMARY_KEYS | EVENING_KEYS
    assert summary["stock_unexplained"] == 0, out
    # WB's and Ozon's reports built in the background; «К перечислению» agrees with what each pays
    assert summary["reports_built"] == 2 and summary["report_reconciled"] >= 1, out
    assert "РАСХОДИТСЯ" not in out and "отчёт комиссионера ozon-main" in out, out
    assert "1C sent its balances formed at" in out and "сверка остатков:" in out
    assert summary["orders_seen"] >= 5, out
    # YM, Megamarket and Ozon push their orders (the rest are polled): some came in by push, none twice
    assert 0 < summary["orders_pushed"] <= summary["orders_seen"], out
    assert re.search(r"orders that came in by push \(before any poll\): .*\bOzon \d+ of \d+", out), out
    # Ozon moved an order's shipping date mid-day: the cloud took it and told the site's pick task
    # ...and no other order's deadline "moved" (a poll and a push reading the same deadline alike)
    assert summary["deadlines_moved"] == 1 and "the cloud took it and the site's pick task shows it" in out, out
    assert summary["orders_packed"] >= 3, out
    assert summary["labels_printed"] >= 3, out
    assert summary["stock_pushes"] > 0, out
    assert summary["orders_oversold"] == 0, out  # the sandboxes sell only what is listed (issue 18, point 6)
    assert summary["picked_by_bin"] >= 2, out  # a combined pick list walked by bin and sorted into totes
    # a second seller added with `marketsync tenant add`: its owner logged in under /t/vtoroy/, saw none of
    # the first seller's orders, and the first seller's token was refused there
    assert summary["tenants"] == 2 and "the second seller's owner logged in at" in out, out
    assert "a buyer ordered on" in out
    took = re.search(r"1C took (\d+) order\(s\).*a second query returned (\d+)", out)
    # 1C's documents: every order, and a «Возврат товара» for each return taken back in
    assert took and int(took.group(1)) == summary["orders_seen"] + summary["returned"] and took.group(2) == "0", out
    labels = list((workdir / "site-1" / "labels").glob("*.png"))
    assert len(labels) >= summary["labels_printed"]  # supply QR codes and acts print there too
    _assert_nothing_left(out, workdir)


def test_ctrl_c_stops_every_child_process(tmp_path: Path):
    """`make demo` (no end given, until Ctrl-C): its day has a mid-day too — 1C's balances and a deadline Ozon
    moves come early (they came only in a day of a given length before) — and Ctrl-C stops every part."""
    workdir = tmp_path / "demo"
    proc = _demo(workdir)
    lines: list[str] = []
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "moved the shipping date" in line:
            break
    assert any("1C sent its balances formed at" in ln for ln in lines), "".join(lines)
    assert any("moved the shipping date" in ln for ln in lines), "".join(lines)
    os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
    rest, _ = proc.communicate(timeout=60)
    out = "".join(lines) + rest
    summary = json.loads(out.strip().splitlines()[-1])
    assert SUMMARY_KEYS <= set(summary) <= SUMMARY_KEYS | EVENING_KEYS
    assert summary["deadlines_moved"] == 1, out
    _assert_nothing_left(out, workdir)


def test_the_manual_packer_mode_leaves_packing_to_a_person(tmp_path: Path):
    """`marketsync demo --packer manual`: the site's simulated packer is off (nothing is packed unless someone
    scans on the packers' page); the default keeps it on."""
    from edge_agent.config import load_config
    from marketsync.demo_config import write_edge_config

    link = {"host": "127.0.0.1", "port": 1883}
    manual, _ = write_edge_config(tmp_path / "manual", link, auto_pack=False)
    auto, _ = write_edge_config(tmp_path / "auto", link)
    assert load_config(manual).auto_pack is False and load_config(auto).auto_pack is True
