"""The templates and static files of both web UIs (the cloud's manager pages, the packers' page, the
print forms) and the translation catalogs. A package only so that an installed marketsync carries them; it holds no code beyond
saying where they are (and translations/toml_extract.py, pybabel's extractor of the marketplaces' profiles, which
only the translation tooling imports)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
TRANSLATIONS = ROOT / "translations"  # gettext catalogs (.po kept in the repo, .mo compiled at start)
