"""The envelope keys of the site link: one HMAC-SHA256 key per site and direction, with a key id (`kid`).

`up` keys sign what site X sends to the cloud, `down` keys what the cloud sends to site X; the cloud holds
every site's keys, a site only its own two. A key file is TOML (mode 600, a secret like the broker
password it is provisioned with: `marketsync link broker-config` writes `credentials/<site>.keys` beside
`credentials/<site>.password`, and `credentials/cloud.keys` for the cloud):

    [[keys]]
    site = "site-1"
    direction = "up"
    kid = "20261206-3f9a1c07"
    key = "<32 random bytes, base64url>"
    active_from = 2026-12-06T14:25:00Z   # the sender signs with it from then on
    expires = 2026-12-21T14:25:00Z       # optional: not accepted any more after that

Rotation (`rotate`, `marketsync link rotate-key`) adds a new key per direction that becomes active later
(`activate_in`, so both sides have the new file before anyone signs with it) and gives the old ones an
end (`grace` after the new one's start), so a message signed with the old key that still waits in an
outbox or in the broker's queue is accepted until then. The sender signs when it publishes (not when it
writes the outbox), so a message published again after the switch carries the new key. A running link
reads its key file again when it changes (`Keyring.reload_if_changed`): no restart is needed.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DIRECTIONS = ("up", "down")
KEY_BYTES = 32


class KeyFileError(ValueError):
    """A key file cannot be read or is malformed: the message names the file and the entry, never a key."""


@dataclass(frozen=True)
class Key:
    site: str
    direction: str  # "up" | "down"
    kid: str
    secret: bytes = field(repr=False)
    active_from: dt.datetime
    expires: dt.datetime | None = None

    def valid_at(self, now: dt.datetime) -> bool:
        return self.expires is None or now < self.expires


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_key(site: str, direction: str, *, active_from: dt.datetime | None = None) -> Key:
    start = active_from or utcnow()
    kid = f"{start:%Y%m%d}-{secrets.token_hex(4)}"
    return Key(site, direction, kid, secrets.token_bytes(KEY_BYTES), start)


class Keyring:
    """The keys one side holds, looked up by (site, direction, kid); optionally backed by a file."""

    def __init__(self, keys: list[Key], path: str | Path | None = None):
        self.keys = list(keys)
        self.path = Path(path) if path is not None else None
        self._stamp = _stamp(self.path) if self.path is not None else None

    @classmethod
    def load(cls, path: str | Path) -> Keyring:
        return cls(read_keys(path), path)

    def sites(self) -> set[str]:
        return {k.site for k in self.keys}

    def signing_key(self, site: str, direction: str, now: dt.datetime | None = None) -> Key | None:
        """The key a sender signs with now: the latest-started one that is active and not expired."""
        now = now or dt.datetime.now(dt.UTC)
        usable = [
            k for k in self.keys
            if k.site == site and k.direction == direction and k.active_from <= now and k.valid_at(now)
        ]
        return max(usable, key=lambda k: k.active_from, default=None)

    def find(self, site: str, direction: str, kid: str) -> Key | None:
        for k in self.keys:
            if k.site == site and k.direction == direction and k.kid == kid:
                return k
        return None

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed since it was read; True when it did. A file that became
        unreadable or malformed keeps the keys held so far (the caller notes the error)."""
        if self.path is None:
            return False
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        self.keys = read_keys(self.path)
        self._stamp = stamp
        return True


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def read_keys(path: str | Path) -> list[Key]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError:
        raise KeyFileError(f"key file {path} is not valid TOML") from None
    entries = data.get("keys", [])
    unknown = sorted(set(data) - {"keys"})
    if unknown or not isinstance(entries, list):
        raise KeyFileError(f"key file {path}: only [[keys]] tables are allowed")
    out: list[Key] = []
    for n, e in enumerate(entries, 1):
        where = f"key file {path}: keys[{n}]"
        if not isinstance(e, dict):
            raise KeyFileError(f"{where}: must be a table")
        extra = sorted(set(e) - {"site", "direction", "kid", "key", "active_from", "expires"})
        if extra:
            raise KeyFileError(f"{where}: unknown key(s) {', '.join(extra)}")
        site, direction, kid = e.get("site"), e.get("direction"), e.get("kid")
        if not isinstance(site, str) or not site or not isinstance(kid, str) or not kid:
            raise KeyFileError(f"{where}: site and kid must be non-empty text")
        if direction not in DIRECTIONS:
            raise KeyFileError(f"{where}: direction must be up or down")
        try:
            secret = base64.urlsafe_b64decode(str(e.get("key", "")) + "==")
        except ValueError:
            raise KeyFileError(f"{where}: key is not base64url") from None
        if len(secret) < 16:
            raise KeyFileError(f"{where}: key must hold at least 16 bytes")
        start, end = e.get("active_from"), e.get("expires")
        if not isinstance(start, dt.datetime) or start.tzinfo is None:
            raise KeyFileError(f"{where}: active_from must be a TOML date-time with a zone (…Z)")
        if end is not None and (not isinstance(end, dt.datetime) or end.tzinfo is None):
            raise KeyFileError(f"{where}: expires must be a TOML date-time with a zone (…Z)")
        out.append(Key(site, direction, kid, secret, start, end))
    return out


def _when(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def keys_toml(keys: list[Key], *, title: str) -> str:
    lines = [
        f"# marketsync site link: envelope keys (HMAC-SHA256) {title}.",
        "# A secret: mode 600, never copied into a log or a ticket. Written by `marketsync link broker-config`",
        "# and `marketsync link rotate-key`; a running link reads it again when it changes.",
    ]
    for k in sorted(keys, key=lambda k: (k.site, k.direction, k.active_from)):
        lines += [
            "",
            "[[keys]]",
            f'site = "{k.site}"',
            f'direction = "{k.direction}"',
            f'kid = "{k.kid}"',
            f'key = "{base64.urlsafe_b64encode(k.secret).decode().rstrip("=")}"',
            f"active_from = {_when(k.active_from)}",
        ]
        if k.expires is not None:
            lines.append(f"expires = {_when(k.expires)}")
    return "\n".join(lines) + "\n"


def write_keys(path: str | Path, keys: list[Key], *, title: str) -> None:
    """Write a key file (mode 600) in one step (a running link never reads half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("")
    os.chmod(tmp, 0o600)
    tmp.write_text(keys_toml(keys, title=title), encoding="utf-8")
    os.replace(tmp, path)


def provision(directory: str | Path, sites: list[str], cloud_user: str = "cloud") -> None:
    """First keys of every site, both directions, active at once: `<site>.keys` for each site and
    `<cloud_user>.keys` holding all of them, in `directory` (the credentials folder)."""
    directory = Path(directory)
    keys = [new_key(site, d) for site in sites for d in DIRECTIONS]
    write_keys(directory / f"{cloud_user}.keys", keys, title="of the cloud: every site's")
    for site in sites:
        write_keys(directory / f"{site}.keys", [k for k in keys if k.site == site], title=f"of site {site}")


def rotate(
    directory: str | Path,
    site: str,
    *,
    activate_in: dt.timedelta = dt.timedelta(hours=24),
    grace: dt.timedelta = dt.timedelta(days=14),
    cloud_user: str = "cloud",
    now: dt.datetime | None = None,
) -> list[Key]:
    """New keys for `site` (both directions) in the credentials folder: added to `<cloud_user>.keys` and
    `<site>.keys`, active `activate_in` from now; the keys in use get `expires` = that moment + `grace`;
    keys already expired are dropped. Returns the new keys (their kids are shown, never their values)."""
    directory = Path(directory)
    now = now or utcnow()
    start = now + activate_in
    cloud_file = directory / f"{cloud_user}.keys"
    site_file = directory / f"{site}.keys"
    cloud_keys = read_keys(cloud_file)
    if site not in {k.site for k in cloud_keys}:
        raise KeyFileError(f"{cloud_file} holds no keys of site {site!r}")
    fresh = [new_key(site, d, active_from=start) for d in DIRECTIONS]
    end = start + grace
    kept: list[Key] = []
    for k in cloud_keys:
        if k.expires is not None and k.expires <= now:
            continue  # past its grace: nothing signed with it is accepted any more
        if k.site == site and (k.expires is None or k.expires > end):
            k = Key(k.site, k.direction, k.kid, k.secret, k.active_from, end)
        kept.append(k)
    all_keys = kept + fresh
    write_keys(cloud_file, all_keys, title="of the cloud: every site's")
    write_keys(site_file, [k for k in all_keys if k.site == site], title=f"of site {site}")
    return fresh
