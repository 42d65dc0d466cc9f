"""pybabel's extractor for the marketplaces' profiles (marketplaces/endpoints/<name>.toml): the texts a
profile holds that the pages and the CLI show translated. Registered in babel.cfg's `[extractors]`; run by
scripts/update-translations.sh (and the catalog test) from the checkout's root, which is on the path.

Only `[profile.push].cabinet` (where in the seller's cabinet the push URL(s) go) is such a text; the rest
of a profile (its title, a brand name, and the API's own terms) is shown as written.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

TRANSLATED = (("profile", "push", "cabinet"),)  # the keys whose string values are msgids
_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")  # [table] or [[array of tables]]


def extract(fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str],
            options: Mapping[str, Any]) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """Babel's extractor protocol: `(lineno, funcname, message, comments)` for each translated key of
    the TOML file that has a non-empty string (no funcname: the message is the whole value)."""
    text = fileobj.read().decode("utf-8")
    document = tomllib.loads(text)
    for path in TRANSLATED:
        value: Any = document
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            yield _line_of(text, path), None, value, []


def _line_of(text: str, path: tuple[str, ...]) -> int:
    """The line where `path`'s last key is set under the table of the keys before it (1 when it is not
    written that way, e.g. as a dotted key: only the reference in the catalog is then less precise)."""
    table, key = ".".join(path[:-1]), path[-1]
    setting = re.compile(rf"^\s*{re.escape(key)}\s*=")
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = re.sub(r"\s*\.\s*", ".", header.group(1))
        elif current == table and setting.match(line):
            return number
    return 1
