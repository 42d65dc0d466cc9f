"""The Russian catalog is whole: every text the code and the templates mark — and the marketplaces' profiles'
texts shown to people (web/translations/toml_extract.py) — has its Russian (all three plural forms where it
counts), with the same placeholders, so nothing falls back to English."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from marketplaces import profiles
from web.translations.toml_extract import extract

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "web" / "translations" / "ru" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")


def _extracted(tmp_path: Path) -> Catalog:
    """What scripts/update-translations.sh extracts (babel.cfg, its keywords), from the checkout's root."""
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(ROOT / "web" / "translations" / "babel.cfg"), "-k", "lazy_gettext", "-k", "N_", "-k", "t",
                    "-o", str(pot), "."], check=True, capture_output=True, cwd=ROOT)
    with pot.open("rb") as f:
        return read_po(f)


def test_every_marked_text_has_its_russian_with_the_same_placeholders(tmp_path):
    wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in _extracted(tmp_path) if m.id}
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


def test_the_profiles_texts_are_extracted_from_their_toml(tmp_path):
    """Where the seller pastes the push URL(s) is the marketplace's profile's own text: babel.cfg's
    extractor reads it from endpoints/<name>.toml — and nothing else of the file (a title, an endpoint's
    doc) — so the catalog keeps its Russian."""
    toml = tmp_path / "testmarket.toml"
    toml.write_text('[families]\napi = "https://api.example"\n\n[profile]\ntitle = "Тестмаркет"\n'
                    '[profile.can]\nreceive_pushes = true\n\n[profile.push]\npaths = ["order"]\n'
                    'cabinet = """Testmarket cabinet: Settings → API: \\\n    paste the address"""\n\n'
                    '[[endpoints]]\ndoc = "orders"\n', "utf-8")
    with toml.open("rb") as f:
        found = list(extract(f, ["_", "N_"], [], {}))
    assert found == [(11, None, "Testmarket cabinet: Settings → API: paste the address", [])]
    wb = ROOT / "marketplaces" / "endpoints" / "wildberries.toml"  # pushes nothing: nothing to translate
    with wb.open("rb") as f:
        assert list(extract(f, ["_"], [], {})) == []

    # the catalog's extraction (babel.cfg, as scripts/update-translations.sh runs it) takes each from its file
    where = {m.id: [path for path, _ in m.locations] for m in _extracted(tmp_path) if m.id}
    pushing = {name: p.push.cabinet for name, p in profiles().items() if p.push is not None}
    assert set(pushing) == {"yandex_market", "ozon", "megamarket"}
    for name, text in pushing.items():
        assert where.get(text) == [f"marketplaces/endpoints/{name}.toml"], (name, where.get(text))
