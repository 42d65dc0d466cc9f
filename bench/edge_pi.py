"""The warehouse box on a Raspberry Pi budget: the real edge agent (`marketsync edge serve`) pinned to one
core (taskset), packing orders through the packers' page while a camera scanner decodes a video file.

Set-up (in a temporary folder): a site database holding `--orders` pick tasks of one unit each (each
its own item) and their marketplace labels as the cloud sends them down — half Ozon-style PDFs
(rendered to ZPL ^GFA on the box), half Wildberries ZPL (passed through); a raw TCP 9100 "printer" on
127.0.0.1 in this process; a 1280x720 video of a parcel with a DataMatrix and a Code 128 for the camera
scanner of a second station; no broker reachable (the box works offline, as it must).

Measured:
- start-to-ready: from starting the process to its ready line (`{"role": "edge", ...}`);
- scan->label: a packer's scan POSTed to the page's /api/scan (it packs the order's only unit) until
  the last byte of that order's label reached the printer, one order after another, p99; beside it,
  the floor: a page request that prints nothing (GET /api/state), p99, in the same run;
- peak resident memory of the agent (VmHWM) over the whole run, summed over every process of the agent (the packer's login is in it: the PIN
  check, scrypt, holds 16 MB for a moment, by design); and where the agent's memory is at the end
  (anonymous against the libraries' file-backed pages, the heavy packages' versions, the kernel's huge
  page mode), so a figure that differs between machines can be told apart;
- idle CPU: the agent's CPU time over `--idle-s` seconds (a minute) after the work, as % of one core;
  beside it the same of a bare Flask+waitress process started with it (the floor of an idle web server).
The floor's start-to-ready and memory are printed beside the agent's too.

Run: .venv/bin/python bench/edge_pi.py [--orders 1000] [--idle-s 60] [--core 0]
Last line: peak_mb=X idle_cpu_pct=Y ready_s=Z p99_ms=W (targets: 120, 1, 2, 25).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the project first: bench/sitelink.py must not stand in for the sitelink package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.edge_scan_to_label import ozon_pdf, wb_zpl  # noqa: E402  (the labels of the scan-to-label bench)
from bench.lib.tcp_printer import TcpPrinter  # noqa: E402
from edge_agent import store  # noqa: E402
from edge_agent.barcodes import ean13_check_digit, symbol_image  # noqa: E402
from edge_agent.config import hash_pin  # noqa: E402
from edge_agent.tasks import inbox  # noqa: E402
from sitelink import store as link_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PIN = "4321"
MARK = "0104600439931256215Ks1234\x1d91EE07\x1d92dGhpcyBpcyBhIHRlc3Q="
FLOOR_APP = """
import json, sys, time, waitress
from flask import Flask
app = Flask("floor")
@app.get("/")
def index():
    return "ok"
server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
print(json.dumps({"url": f"http://127.0.0.1:{server.effective_port}"}), flush=True)
server.run()
"""


VIDEO_FRAMES, VIDEO_FPS = 300, 25
CAMERA = """[[scanners]]
kind = "camera"
station = "cam-1"
source = "{video}"
fps = {fps}"""


def make_video(path: Path, frames: int = VIDEO_FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (1280, 720))
    dm = np.asarray(symbol_image("datamatrix", MARK, 5).convert("L"))
    bars = np.asarray(symbol_image("code128", "PARCEL-0001", 3, 110).convert("L"))
    for i in range(frames):
        frame = np.full((720, 1280, 3), 160, np.uint8)
        if 30 <= i < 240:  # a parcel comes into view, moves a little, leaves
            x = 100 + (i % 50) * 2
            frame[80:80 + dm.shape[0] + 40, x:x + dm.shape[1] + 40] = 240
            frame[100:100 + dm.shape[0], x + 20:x + 20 + dm.shape[1]] = dm[:, :, None]
            frame[400:400 + bars.shape[0] + 40, x + 300:x + 300 + bars.shape[1] + 60] = 240
            frame[420:420 + bars.shape[0], x + 330:x + 330 + bars.shape[1]] = bars[:, :, None]
        writer.write(frame)
    writer.release()
    return path


def barcode(i: int) -> str:
    body = f"4607{i:08d}"
    return body + ean13_check_digit(body)


def seed_site(db: Path, orders: int) -> None:
    """The pick tasks and labels the cloud would have sent down, written by the site's own inbox code."""
    conn = store.connect(db)
    link_store.ensure_schema(conn)
    items = [{"item_id": f"item-{i}", "name": f"Товар {i}", "barcode": barcode(i), "bin": f"A-{i % 40:02d}"}
             for i in range(orders)]
    pdf = [ozon_pdf(f"{10000000 + i}-0001-1") for i in range(0, orders, 2)]
    with store.transaction(conn):
        inbox.apply_catalog(conn, {"items": items})
        for i, item in enumerate(items):
            ozon = i % 2 == 0
            order = f"{10000000 + i}-0001-1" if ozon else f"WB{400000000 + i}"
            inbox.apply_pick_task(conn, {
                "task_id": f"t-{i}", "order_id": order, "marketplace": "ozon" if ozon else "wildberries",
                "number": order, "deadline": "2026-12-31T10:00:00Z",
                "lines": [{"item_id": item["item_id"], "barcode": item["barcode"], "name": item["name"],
                           "quantity": 1, "bin": item["bin"]}]})
            data = pdf[i // 2] if ozon else wb_zpl(order)
            inbox.apply_label(conn, {"order_id": order, "format": "pdf" if ozon else "zpl",
                                     "data_b64": base64.b64encode(data).decode(), "width_mm": 75 if ozon else 58,
                                     "height_mm": 120 if ozon else 40})
    conn.close()


def edge_toml(folder: Path, printer_port: int, video: Path | None) -> Path:
    path = folder / "edge.toml"
    path.write_text(f"""
[site]
id = "site-pi"
warehouse = "main"
db_path = "site.sqlite"
stations = ["pack-1", "cam-1"]
[web]
host = "127.0.0.1"
port = 0
[mqtt]
host = "127.0.0.1"
port = 1
[printer]
kind = "zpl_tcp"
host = "127.0.0.1"
port = {printer_port}
[label]
width_mm = 75
height_mm = 120
dpi = 203
{CAMERA.format(video=video, fps=VIDEO_FPS) if video else ""}
[[staff]]
name = "Анна"
pin_hash = "{hash_pin(PIN)}"
""", encoding="utf-8")
    return path


def start(cmd: list[str], cwd: Path, core: int) -> tuple[subprocess.Popen, str, float]:
    """Start a process pinned to `core`; its URL and the seconds until it printed its ready line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["taskset", "-c", str(core), *cmd], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=open(cwd / f"{Path(cmd[-1]).stem}.log", "w"),  # noqa: SIM115
                            env={**os.environ, "PYTHONPATH": str(ROOT), "MARKETSYNC_LOG": "WARNING"})
    line = proc.stdout.readline()  # type: ignore[union-attr]
    ready = time.perf_counter() - t0
    if not line:
        raise SystemExit(f"{cmd} did not start; see {cwd}")
    return proc, json.loads(line)["url"], ready


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmHWM", "VmRSS")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def family(pid: int) -> list[int]:
    """The agent and every process it started (were a camera decoded in a child, its memory counts too)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def family_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS summed over the agent's processes (a peak summed over processes is an upper bound)."""
    total = {"VmHWM": 0, "VmRSS": 0, "processes": 0}
    for p in family(pid):
        try:
            st = proc_status(p)
        except OSError:
            continue
        total["VmHWM"] += st.get("VmHWM", 0)
        total["VmRSS"] += st.get("VmRSS", 0)
        total["processes"] += 1
    return total


HEAVY_PACKAGES = ("opencv-python-headless", "numpy", "pillow", "pypdfium2", "zxing-cpp")


def memory_split(pid: int) -> str:
    """Where the agent's resident memory is, so a figure that differs between machines can be told apart:
    anonymous (Python objects, malloc's heap, buffers) against file-backed (the libraries' pages), the
    file-backed by package, with the versions of the heavy packages and the kernel's transparent huge
    page mode beside it (both change the resident size of the same code)."""
    with open(f"/proc/{pid}/status") as fh:
        st = {ln.split(":")[0]: int(ln.split()[1]) for ln in fh if ln.startswith(("RssAnon", "RssFile"))}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        st.update({ln.split(":")[0]: int(ln.split()[1]) for ln in fh if ln.startswith(("AnonHugePages", "FilePmdMapped"))})
    libs: dict[str, int] = {}
    name = ""
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                path = parts[5] if len(parts) > 5 else ""
                name = path.split("site-packages/")[1].split("/")[0] if "site-packages/" in path else (
                    Path(path).name if path.startswith("/") else "")
            elif parts[0] == "Rss:" and name:
                libs[name] = libs.get(name, 0) + int(parts[1])
    top = ", ".join(f"{k} {v / 1024:.1f}" for k, v in sorted(libs.items(), key=lambda kv: -kv[1])[:5])
    from importlib.metadata import PackageNotFoundError, version
    versions = []
    for pkg in HEAVY_PACKAGES:
        try:
            versions.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            versions.append(f"{pkg} -")
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        thp = "?"
    return (f"anonymous {st.get('RssAnon', 0) / 1024:.1f} MB, file-backed {st.get('RssFile', 0) / 1024:.1f} MB "
            f"(largest: {top}); in huge pages {(st.get('AnonHugePages', 0) + st.get('FilePmdMapped', 0)) / 1024:.1f} MB "
            f"(the kernel's mode: {thp}); {', '.join(versions)}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family_cpu(pid: int) -> float:
    total = 0.0
    for p in family(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
    return total


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--idle-s", type=float, default=60.0)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--no-camera", action="store_true", help="without the camera scanner (its share of the figures)")
    args = ap.parse_args()
    others = sorted(os.sched_getaffinity(0) - {args.core})
    if others:  # the load (this process: the page's client, the printer) runs beside the box, not on its core
        os.sched_setaffinity(0, set(others))
    with tempfile.TemporaryDirectory(prefix="edge-pi-") as tmp:
        folder = Path(tmp)
        printer = TcpPrinter()
        video = make_video(folder / "parcel.mp4")
        t = time.perf_counter()
        seed_site(folder / "site.sqlite", args.orders)
        print(f"site seeded: {args.orders} orders (half Ozon PDF labels, half WB ZPL) in {time.perf_counter() - t:.1f} s; "
              f"agent pinned to core {args.core}, load on {others or 'the same core'}")
        floor_py = folder / "floor_app.py"
        floor_py.write_text(FLOOR_APP, encoding="utf-8")
        floor, floor_url, floor_ready = start([sys.executable, str(floor_py)], folder, args.core)
        httpx.get(floor_url, timeout=5)
        cfg = edge_toml(folder, printer.port, None if args.no_camera else video)
        agent, url, ready = start([sys.executable, "-m", "marketsync.cli", "edge", "serve", "--config", str(cfg)],
                                  folder, args.core)
        at_ready, t_ready = family_status(agent.pid), time.perf_counter()
        try:
            client = httpx.Client(base_url=url, timeout=10, follow_redirects=False)
            r = client.post("/login", data={"name": "Анна", "pin": PIN, "station": "pack-1"})
            assert r.status_code == 302, r.text[:300]
            latencies: list[float] = []
            floor_ms: list[float] = []
            missing = 0
            t_load = time.perf_counter()
            for i in range(args.orders):
                t0 = time.perf_counter()
                res = client.post("/api/scan", json={"code": barcode(i), "scan_id": f"bench-{i:08d}"})
                res.raise_for_status()
                arrived = printer.wait_for(i + 1 - missing)
                if arrived is None:
                    missing += 1
                    continue
                latencies.append((arrived - t0) * 1000)
                if i % 5 == 0:
                    t1 = time.perf_counter()
                    client.get("/api/state").raise_for_status()
                    floor_ms.append((time.perf_counter() - t1) * 1000)
            load_s = time.perf_counter() - t_load
            after_load = family_status(agent.pid)
            # idle: once the camera's video file has ended (its scanner stops there) and the work is done
            time.sleep(max(2.0, t_ready + VIDEO_FRAMES / VIDEO_FPS + 2.0 - time.perf_counter()))
            a0, f0, t_idle = family_cpu(agent.pid), cpu_seconds(floor.pid), time.perf_counter()
            time.sleep(args.idle_s)
            span = time.perf_counter() - t_idle
            idle = (family_cpu(agent.pid) - a0) / span * 100
            idle_floor = (cpu_seconds(floor.pid) - f0) / span * 100
            mem, mem_floor = family_status(agent.pid), proc_status(floor.pid)
            split = memory_split(agent.pid)
        finally:
            for proc in (agent, floor):
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        peak = mem["VmHWM"] / 1024
        print(f"start to ready: agent {ready:.2f} s; floor (bare Flask+waitress) {floor_ready:.2f} s")
        print(f"peak memory:    agent {peak:.1f} MB (at ready {at_ready['VmRSS'] / 1024:.1f}, after the packing "
              f"{after_load['VmRSS'] / 1024:.1f}, at the end {mem['VmRSS'] / 1024:.1f}; {mem['processes']} process(es) "
              f"of the agent counted); "
              f"floor {mem_floor['VmHWM'] / 1024:.1f} MB")
        print(f"agent's memory at the end: {split}")
        print(f"packing:        {len(latencies)} of {args.orders} orders packed and labelled in {load_s:.1f} s "
              f"({len(printer.jobs)} labels at the printer, {missing} missing); camera scanner: "
              f"{'none (--no-camera)' if args.no_camera else f'{VIDEO_FRAMES} frames 1280x720 at {VIDEO_FPS} fps'}")
        print(f"scan->label:    p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms, "
              f"max {max(latencies):.1f} ms; floor (page request, no label) p99 {pct(floor_ms, 0.99):.1f} ms")
        print(f"idle CPU over {span:.0f} s: agent {idle:.2f} %; floor {idle_floor:.2f} %")
        print(f"peak_mb={peak:.1f} idle_cpu_pct={idle:.2f} ready_s={ready:.2f} p99_ms={pct(latencies, 0.99):.1f}")


if __name__ == "__main__":
    main()
