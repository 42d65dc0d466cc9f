"""The box starts light: importing the edge agent and starting a site with its page does not load the
heavy modules (pdfium, OpenCV, zxing-cpp); each loads when first used (a PDF label rendered, a barcode
decoded). Each check runs in a fresh interpreter, so what an earlier test imported cannot hide it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("cv2", "zxingcpp", "pypdfium2", "biip")  # biip: GS1's tables, ~16 MB resident


def run(code: str, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "MARKETSYNC_LOG": "WARNING"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_edge_loads_no_heavy_module(tmp_path):
    got = run(f"""
        import json, sys
        import edge_agent.cli, edge_agent.app, edge_agent.site, edge_agent.device_hub, edge_agent.printing
        import edge_agent.labels, edge_agent.decode, edge_agent.devices.camera, edge_agent.video
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """, tmp_path)
    assert got == []


def test_a_started_site_loads_them_only_when_first_used(tmp_path):
    got = run(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "tests" / "edge")!r})
        sys.path.insert(0, {str(ROOT / "tests" / "edge_devices")!r})
        from edge_testkit import edge_config
        from edge_agent.app import create_app
        from edge_agent.site import Site

        site = Site(edge_config(Path(".")))
        site.start()
        try:
            page = create_app(site).test_client().get("/login")
            assert page.status_code == 200
            started = [m for m in {HEAVY!r} if m in sys.modules]
            from conftest import pdf_label
            from edge_agent.labels import prepare_label
            prepare_label(pdf_label("12345678-0001-1", 58, 40), "pdf", site.printer.profile)
            after_pdf = [m for m in {HEAVY!r} if m in sys.modules]
            from edge_agent.decode import decode_image
            import numpy as np
            decode_image(np.full((60, 60), 255, np.uint8))
            after_decode = [m for m in {HEAVY!r} if m in sys.modules]
            from edge_agent.tasks.marking import parse
            parse("0104600439931256215Ks1234\x1d91EE07\x1d92" + "A" * 40 + "abcd")
            after_marking = [m for m in {HEAVY!r} if m in sys.modules]
        finally:
            site.begin_stop()
            site.stop()
            site.close()
        print(json.dumps([started, after_pdf, after_decode, after_marking]))
    """, tmp_path)
    started, after_pdf, after_decode, after_marking = got
    assert started == []
    assert "pypdfium2" in after_pdf
    assert {"zxingcpp", "cv2"} <= set(after_decode) and "biip" not in after_decode
    assert "biip" in after_marking  # the first marking code parsed
