"""The templates and static files of both web UIs (the cloud's manager pages, the packers' page, the
print forms). A package only so that an installed marketsync carries them; it holds no code beyond
saying where they are."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
