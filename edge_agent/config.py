"""The edge box's configuration: one TOML file (`edge.toml`) with working defaults.

Owns the `EdgeConfig` dataclass and `load_config(path)`. Secrets (the MQTT password) come from the
environment (`MARKETSYNC_MQTT_PASSWORD`) or a file readable by the service alone (`password_file`),
never from the TOML itself in production. Staff PINs are stored only as salted scrypt hashes
(`hash_pin` / `check_pin`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has a bad value; the message says which."""


# The demo's simulated packer, which `[tasks] auto_pack = true` starts: it ships with the demo
# (marketsync/demo_packer.py), not with the edge; the edge only names it, as any other plugin.
AUTO_PACKER = "marketsync.demo_packer:attach"


@dataclass
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    tls_ca: str | None = None


@dataclass
class Staff:
    name: str
    pin_hash: str


@dataclass
class EdgeConfig:
    site_id: str = "site-1"
    warehouse: str = "main"
    db_path: str = "var/edge/site.sqlite"
    web_host: str = "127.0.0.1"
    web_port: int = 8090
    secret_key: str | None = None  # signs the page's session cookie; when unset, one kept in the site DB
    stations: list[str] = field(default_factory=lambda: ["pack-1"])
    staff: list[Staff] = field(default_factory=list)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    printer: dict[str, Any] = field(default_factory=lambda: {"kind": "virtual", "out_dir": "var/edge/labels"})
    label_profile: dict[str, Any] = field(default_factory=lambda: {"width_mm": 58, "height_mm": 40, "dpi": 203})
    scanners: list[dict[str, Any]] = field(default_factory=list)
    cameras: list[dict[str, Any]] = field(default_factory=list)  # packing video, each bound to a station
    video_dir: str = "var/edge/video"
    print_retry_s: float = 5.0
    plugins: list[str] = field(default_factory=list)  # "module:function" helpers started with the site
    auto_pack: bool = False  # demo only: a simulated packer (AUTO_PACKER) packs every new pick task
    auto_pack_station: str = "auto"
    auto_pack_delay_s: float = 0.2

    def plugin_entries(self) -> list[str]:
        """The helpers the site starts: `plugins`, and the simulated packer when `auto_pack` is on."""
        entries = list(self.plugins)
        if self.auto_pack and AUTO_PACKER not in entries:
            entries.append(AUTO_PACKER)
        return entries

    def mqtt_password(self) -> str | None:
        env = os.environ.get("MARKETSYNC_MQTT_PASSWORD")
        if env:
            return env
        if self.mqtt.password_file:
            try:
                return Path(self.mqtt.password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file cannot be read: {exc.strerror}") from None
        return self.mqtt.password


DEFAULTS = Path(__file__).resolve().parent.parent / "config" / "edge.toml"


def load_config(path: str | os.PathLike[str] | None = None) -> EdgeConfig:
    """Read an edge.toml; every key is optional. Relative paths are taken from the file's folder."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        base = p.resolve().parent
    return config_from_dict(data, base)


def config_from_dict(data: dict[str, Any], base: Path | None = None) -> EdgeConfig:
    base = base or Path.cwd()
    cfg = EdgeConfig()
    site = data.get("site", {})
    web = data.get("web", {})
    mqtt = data.get("mqtt", {})
    cfg.site_id = str(site.get("id", cfg.site_id))
    cfg.warehouse = str(site.get("warehouse", cfg.warehouse))
    cfg.db_path = _path(base, site.get("db_path", cfg.db_path))
    cfg.stations = [str(s) for s in site.get("stations", cfg.stations)] or ["pack-1"]
    cfg.web_host = str(web.get("host", cfg.web_host))
    cfg.web_port = _int(web.get("port", cfg.web_port), "web.port")
    cfg.secret_key = web.get("secret_key")
    cfg.mqtt = MqttConfig(
        host=str(mqtt.get("host", "127.0.0.1")),
        port=_int(mqtt.get("port", 1883), "mqtt.port"),
        username=mqtt.get("username"),
        password=mqtt.get("password"),
        password_file=_path(base, mqtt["password_file"]) if mqtt.get("password_file") else None,
        tls_ca=_path(base, mqtt["tls_ca"]) if mqtt.get("tls_ca") else None,
    )
    printer = dict(data.get("printer", cfg.printer))
    if "out_dir" in printer:
        printer["out_dir"] = _path(base, printer["out_dir"])
    cfg.printer = printer
    cfg.label_profile = dict(data.get("label", cfg.label_profile))
    cfg.scanners = [dict(s) for s in data.get("scanners", [])]
    cfg.cameras = [dict(c) for c in data.get("cameras", [])]
    for cam in cfg.cameras:
        if "source" in cam and isinstance(cam["source"], str) and "://" not in cam["source"] \
                and not cam["source"].startswith("/dev/"):
            cam["source"] = _path(base, cam["source"])
    cfg.video_dir = _path(base, site.get("video_dir", cfg.video_dir))
    cfg.plugins = [str(p) for p in site.get("plugins", cfg.plugins)]
    staff = data.get("staff", [])
    for entry in staff:
        if "name" not in entry or "pin_hash" not in entry:
            raise ConfigError("every [[staff]] entry needs name and pin_hash (see `marketsync edge hash-pin`)")
    cfg.staff = [Staff(str(s["name"]), str(s["pin_hash"])) for s in staff]
    tasks = data.get("tasks", {})
    cfg.print_retry_s = float(tasks.get("print_retry_s", cfg.print_retry_s))
    cfg.auto_pack = bool(tasks.get("auto_pack", cfg.auto_pack))
    cfg.auto_pack_station = str(tasks.get("auto_pack_station", cfg.auto_pack_station))
    cfg.auto_pack_delay_s = float(tasks.get("auto_pack_delay_s", cfg.auto_pack_delay_s))
    return cfg


def _path(base: Path, value: str) -> str:
    p = Path(value)
    return str(p if p.is_absolute() else base / p)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return value


# -- staff PINs ---------------------------------------------------------------------------------

_N, _R, _P = 2**14, 8, 1


def hash_pin(pin: str) -> str:
    """A salted scrypt hash of a PIN, as stored in edge.toml: `scrypt$<salt>$<hash>`."""
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ConfigError("a PIN is 4 to 12 digits")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_pin(pin: str, pin_hash: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = pin_hash.split("$")
        if scheme != "scrypt":
            return False
        salt, want = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    got = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return hmac.compare_digest(got, want)


def write_config(path: str | os.PathLike[str], *, site_id: str, db_path: str, labels_dir: str,
                 mqtt_host: str = "127.0.0.1", mqtt_port: int = 1883, mqtt_username: str | None = None,
                 mqtt_password_file: str | None = None, tls_ca: str | None = None, web_port: int = 0,
                 warehouse: str = "main", auto_pack: bool = False, staff: dict[str, str] | None = None,
                 label_mm: tuple[float, float] | None = None, dpi: int = 203) -> Path:
    """Write a working edge.toml (the demo and tests use it). `staff` maps names to PINs; only hashes
    are written. The MQTT password goes in a file of its own (`mqtt_password_file`), not in the TOML."""
    def q(value: str) -> str:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["[site]", f"id = {q(site_id)}", f"warehouse = {q(warehouse)}", f"db_path = {q(db_path)}",
             'stations = ["pack-1", "pack-2", "tsd-1"]', "", "[web]", 'host = "127.0.0.1"', f"port = {int(web_port)}",
             "", "[mqtt]", f"host = {q(mqtt_host)}", f"port = {int(mqtt_port)}"]
    if mqtt_username:
        lines.append(f"username = {q(mqtt_username)}")
    if mqtt_password_file:
        lines.append(f"password_file = {q(mqtt_password_file)}")
    if tls_ca:
        lines.append(f"tls_ca = {q(tls_ca)}")
    lines += ["", "[printer]", 'kind = "virtual"', f"out_dir = {q(labels_dir)}"]
    if label_mm:
        lines += ["", "[label]", f"width_mm = {label_mm[0]}", f"height_mm = {label_mm[1]}", f"dpi = {int(dpi)}"]
    lines += ["", "[tasks]",
              f"auto_pack = {'true' if auto_pack else 'false'}"]
    for name, pin in (staff or {"Демо": "1234"}).items():
        lines += ["", "[[staff]]", f"name = {q(name)}", f"pin_hash = {q(hash_pin(pin))}"]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
