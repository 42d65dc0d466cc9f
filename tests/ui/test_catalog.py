"""The Russian catalog is whole: every text the code and the templates mark has its Russian (all three
plural forms where it counts), with the same placeholders, so nothing falls back to English."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "web" / "translations" / "ru" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")


def test_every_marked_text_has_its_russian_with_the_same_placeholders(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(ROOT / "web" / "translations" / "babel.cfg"), "-k", "lazy_gettext", "-k", "N_", "-k", "t",
                    "--no-location", "-o", str(pot), str(ROOT)], check=True, capture_output=True, cwd=ROOT)
    with pot.open("rb") as f:
        wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    assert len(wanted) > 300, len(wanted)  # the extraction found the texts
    with PO.open("rb") as f:
        catalog = read_po(f, locale="ru")
    have = {}
    for m in catalog:
        if m.id:
            have[m.id if isinstance(m.id, str) else m.id[0]] = m
    missing = sorted(wanted - set(have))
    assert not missing, f"texts not in the Russian catalog (run scripts/update-translations.sh): {missing[:10]}"
    bad = []
    for key in wanted:
        m = have[key]
        forms = list(m.string) if isinstance(m.string, tuple) else [m.string]
        sources = list(m.id) if isinstance(m.id, tuple) else [m.id]
        if len(forms) != (3 if isinstance(m.id, tuple) else 1) or not all(forms):
            bad.append(f"{key!r}: not translated")
            continue
        want = set(PLACEHOLDER.findall(" ".join(sources)))
        for form in forms:
            if set(PLACEHOLDER.findall(form)) - want or (want - {"%(num)d"}) - set(PLACEHOLDER.findall(form)):
                bad.append(f"{key!r}: placeholders differ in {form!r}")
    assert not bad, "\n".join(sorted(bad))
