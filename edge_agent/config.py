"""The edge box's configuration: one TOML file (`edge.toml`) with working defaults, read once at load.

Owns the `EdgeConfig` dataclass (what the site runs with), one dataclass per table of the file (`[site]`,
`[web]`, `[mqtt]`, `[printer]`, `[label]`, `[[scanners]]`, `[[cameras]]`, `[tasks]`, `[[staff]]`) and
`load_config(path)`. An unknown key or a value of the wrong type stops the start with one line naming
the file and the key (sitelink.config_file; never a secret's value); config/edge.toml documents every
key. Secrets (the MQTT password) come from the environment (`MARKETSYNC_MQTT_PASSWORD`) or a file
readable by the service alone (`password_file`), never from the TOML itself in production. Staff PINs
are stored only as salted scrypt hashes (`hash_pin` / `check_pin`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sitelink.config_file import ConfigError, Place, read, secret
from sitelink.keys import KeyFileError, read_keys
from sitelink.link import topic_root
from sitelink.store import LinkError

__all__ = ["DEFAULTS", "CameraSettings", "ConfigError", "EdgeConfig", "LabelStock", "MqttConfig",
           "PrinterSettings", "ScannerSettings", "Staff", "ChestnyZnakSection", "check_pin", "config_from_dict", "hash_pin",
           "load_config", "write_config"]


class _Given:
    """A device table: the keys written (None: not written, the device's own default applies)."""

    def as_dict(self) -> dict[str, Any]:
        """The table as the device openers (edge_agent.devices) take it: the keys that were written."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) is not None}


@dataclass
class SiteSection:
    """[site]: which site this box is, its own warehouse, its packing stations and where it keeps data."""

    id: str = "site-1"
    warehouse: str = "main"
    db_path: str = "var/edge/site.sqlite"  # relative paths: from the file's folder
    video_dir: str = "var/edge/video"
    stations: list[str] = field(default_factory=lambda: ["pack-1"])
    plugins: list[str] = field(default_factory=list)  # "module:function" helpers started with the site


@dataclass
class WebSection:
    """[web]: the packers' page."""

    host: str = "127.0.0.1"
    port: int = 8090
    secret_key: str | None = secret(None)  # signs the session cookie; None: one kept in the site DB
    monitor_token: str | None = secret(None)  # read-only `/api/status` for a monitor (Bearer); None: PIN login only


# The demo's simulated packer, which `[tasks] auto_pack = true` starts: it ships with the demo
# (marketsync/demo_packer.py), not with the edge; the edge only names it, as any other plugin.
AUTO_PACKER = "marketsync.demo_packer:attach"


@dataclass
class MqttConfig:
    """[mqtt]: the broker; the password from MARKETSYNC_MQTT_PASSWORD or password_file (see mqtt_password)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = secret(None)
    password_file: str | None = None
    tls_ca: str | None = None
    keys_file: str | None = None  # this site's envelope keys (sitelink.keys); None: unsigned, unchecked
    # the seller of an installation of several this site belongs to (`marketsync tenant add`): its topics
    # are under ms/t/<tenant>/v1; "": the installation's main seller (ms/v1)
    tenant: str = ""

    def check(self, place: Place) -> None:
        if self.tenant:
            try:
                topic_root(self.tenant)
            except LinkError:
                raise place.at("tenant").error(
                    f"must be a seller's id (a-z, 0-9 and -, 2 to 31 characters), got {self.tenant!r}") from None


@dataclass
class PrinterSettings(_Given):
    """[printer]: passed to edge_agent.devices.open_printer; a key left out takes the kind's own default."""

    kind: str | None = None  # virtual (default), escpos_*, zpl_*, tspl_*, cups, file
    name: str | None = None
    language: str | None = None
    dpi: int | None = None
    width_mm: float | None = None
    height_mm: float | None = None
    out_dir: str | None = None  # virtual
    path: str | None = None  # file
    device: str | None = None  # serial, usb device node, escpos_file
    host: str | None = None  # tcp, network
    port: int | None = None
    timeout_s: float | None = None
    timeout_ms: int | None = None  # escpos_usb
    settle_s: float | None = None  # tcp
    vendor_id: str | int | None = None  # usb through pyusb
    product_id: str | int | None = None
    baudrate: int | None = None  # serial
    rtscts: bool | None = None
    queue: str | None = None  # cups
    chunk_bytes: int | None = None  # slow USB printers
    chunk_pause_ms: float | None = None


@dataclass
class LabelStock:
    """[label]: the label stock loaded in the printer."""

    width_mm: float = 58.0
    height_mm: float = 40.0
    dpi: int = 203

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ScannerSettings(_Given):
    """One [[scanners]]: passed to edge_agent.devices.open_scanner; a camera scanner takes the camera keys."""

    kind: str | None = None  # evdev, serial, camera, virtual (default)
    station: str | None = None
    device: str | None = None
    layout: str | None = None  # us, ru
    grab: bool | None = None
    gs_keys: list[str] | None = None
    gs_substitutes: list[str] | None = None
    baudrate: int | None = None
    source: str | int | None = secret(None)  # camera: as in [[cameras]]
    width: int | None = None
    height: int | None = None
    loop: bool | None = None
    reopen_s: float | None = None
    thorough: bool | None = None
    stream_timeout_s: float | None = None
    fps: float | None = None


@dataclass
class CameraSettings(_Given):
    """One [[cameras]]: packing video at a station (edge_agent.devices.open_camera, edge_agent.video)."""

    source: str | int | None = secret(None)  # /dev/video0, a device index, a video file or an rtsp:// URL
    station: str | None = None
    width: int | None = None
    height: int | None = None
    loop: bool | None = None
    reopen_s: float | None = None
    thorough: bool | None = None
    stream_timeout_s: float | None = None
    fps: float | None = None
    retention_days: float | None = None
    max_gb: float | None = None
    max_files: int | None = None


DEFAULT_BIN_PATTERN = r"^[A-Za-z]{1,3}-?\d{1,3}(-\d{1,3}){0,3}$"  # A-02, B-01-03, K12


@dataclass
class TasksSection:
    """[tasks]: label print retries, bins, combined picks and the demo's simulated packer."""

    print_retry_s: float = 5.0
    bin_pattern: str = DEFAULT_BIN_PATTERN  # what a bin label on a shelf reads (a regular expression)
    wave_max_orders: int = 12  # orders in one combined pick (one tote each at the packing table)
    auto_pack: bool = False
    auto_pack_station: str = "auto"
    auto_pack_delay_s: float = 0.2
    auto_pack_short_at: int = 0


@dataclass
class ChestnyZnakSection:
    """[chestny_znak]: the marking register a scanned code is checked against at packing (url "" = off:
    structure checks only). The True API token comes from MARKETSYNC_CZ_TOKEN or token_file, never the TOML."""

    url: str = ""
    inn: str = ""  # the seller's INN: a code owned by another INN is refused
    token_file: str | None = None
    product_group: str = ""  # True API `pg` (e.g. "lp"); "" asks across every group
    timeout_s: float = 2.0  # longer than this, the code is packed unchecked and checked later
    retry_after_s: float = 60.0  # after a failure, how long every code is packed unchecked without asking

    def token(self) -> str:
        env = os.environ.get("MARKETSYNC_CZ_TOKEN")
        if env:
            return env.strip()
        if self.token_file:
            try:
                return Path(self.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"chestny_znak.token_file cannot be read: {exc.strerror}") from None
        return ""


@dataclass
class Staff:
    """One [[staff]]: who may log in to the packers' page."""

    refused: ClassVar[dict[str, str]] = {
        "pin": "PINs are not kept in edge.toml: write pin_hash (make one with `marketsync edge hash-pin`)"}

    name: str
    pin_hash: str = secret()


@dataclass
class EdgeFile:
    """Every table edge.toml may have (None: the table is not there)."""

    site: SiteSection = field(default_factory=SiteSection)
    web: WebSection = field(default_factory=WebSection)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    printer: PrinterSettings | None = None
    label: LabelStock = field(default_factory=LabelStock)
    scanners: list[ScannerSettings] = field(default_factory=list)
    cameras: list[CameraSettings] = field(default_factory=list)
    tasks: TasksSection = field(default_factory=TasksSection)
    staff: list[Staff] = field(default_factory=list)
    chestny_znak: ChestnyZnakSection = field(default_factory=ChestnyZnakSection)


@dataclass
class EdgeConfig:
    site_id: str = SiteSection.id
    warehouse: str = SiteSection.warehouse
    db_path: str = SiteSection.db_path
    web_host: str = WebSection.host
    web_port: int = WebSection.port
    secret_key: str | None = field(default=None, repr=False)  # signs the page's session cookie; else kept in the DB
    monitor_token: str | None = field(default=None, repr=False)  # read-only /api/status for monitoring
    stations: list[str] = field(default_factory=lambda: ["pack-1"])
    staff: list[Staff] = field(default_factory=list)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    printer: PrinterSettings = field(default_factory=lambda: PrinterSettings(kind="virtual", out_dir="var/edge/labels"))
    label_profile: LabelStock = field(default_factory=LabelStock)
    scanners: list[ScannerSettings] = field(default_factory=list)
    cameras: list[CameraSettings] = field(default_factory=list)  # packing video, each bound to a station
    video_dir: str = SiteSection.video_dir
    print_retry_s: float = TasksSection.print_retry_s
    bin_pattern: str = TasksSection.bin_pattern
    wave_max_orders: int = TasksSection.wave_max_orders
    plugins: list[str] = field(default_factory=list)  # "module:function" helpers started with the site
    auto_pack: bool = TasksSection.auto_pack  # demo only: a simulated packer (AUTO_PACKER) packs every new pick task
    auto_pack_station: str = TasksSection.auto_pack_station
    auto_pack_delay_s: float = TasksSection.auto_pack_delay_s
    auto_pack_short_at: int = TasksSection.auto_pack_short_at  # demo only: its Nth task finds the shelf empty
    chestny_znak: ChestnyZnakSection = field(default_factory=ChestnyZnakSection)

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
    """Read an edge.toml; every key is optional, none unknown. Relative paths are taken from the file's
    folder. A file that is missing, not TOML or has an unknown key or a wrong value raises ConfigError
    with one line naming the file."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    source = "edge.toml"
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except OSError as exc:
            raise ConfigError(f"config file {p} cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        base, source = p.resolve().parent, str(p)
    return config_from_dict(data, base, source=source)


def read_tables(data: dict[str, Any], source: str = "edge.toml") -> EdgeFile:
    """The parsed TOML of an edge.toml checked and typed; `source` names the file in an error line."""
    return read(EdgeFile, data, Place(source))


def config_from_dict(data: dict[str, Any], base: Path | None = None, *, source: str = "edge.toml") -> EdgeConfig:
    base = base or Path.cwd()
    tables = read_tables(data, source)
    site, web, mqtt, tasks = tables.site, tables.web, tables.mqtt, tables.tasks
    printer = tables.printer or EdgeConfig().printer
    if printer.out_dir is not None:
        printer.out_dir = _path(base, printer.out_dir)
    for cam in tables.cameras:
        if isinstance(cam.source, str) and "://" not in cam.source and not cam.source.startswith("/dev/"):
            cam.source = _path(base, cam.source)
    mqtt.password_file = _path(base, mqtt.password_file) if mqtt.password_file else None
    mqtt.tls_ca = _path(base, mqtt.tls_ca) if mqtt.tls_ca else None
    if mqtt.keys_file:
        mqtt.keys_file = _path(base, mqtt.keys_file)
        try:
            read_keys(mqtt.keys_file)
        except KeyFileError as exc:
            raise Place(source).at("mqtt").at("keys_file").error(str(exc)) from None
    cz = tables.chestny_znak
    cz.token_file = _path(base, cz.token_file) if cz.token_file else None
    if cz.url and not (cz.inn.isdigit() and len(cz.inn) in (10, 12)):
        raise ConfigError(f"{source}: [chestny_znak] inn must be the seller's INN (10 or 12 digits) when url is set")
    try:
        re.compile(tasks.bin_pattern)
    except re.error as exc:
        raise Place(source).at("tasks").at("bin_pattern").error(f"not a regular expression: {exc}") from None
    if not 1 <= tasks.wave_max_orders <= 99:
        raise Place(source).at("tasks").at("wave_max_orders").error("must be 1..99 (one tote per order)")
    return EdgeConfig(
        site_id=site.id, warehouse=site.warehouse, db_path=_path(base, site.db_path),
        web_host=web.host, web_port=web.port, secret_key=web.secret_key, monitor_token=web.monitor_token, stations=site.stations or ["pack-1"],
        staff=tables.staff, mqtt=mqtt, printer=printer, label_profile=tables.label, scanners=tables.scanners,
        cameras=tables.cameras, video_dir=_path(base, site.video_dir), print_retry_s=tasks.print_retry_s,
        bin_pattern=tasks.bin_pattern, wave_max_orders=tasks.wave_max_orders,
        auto_pack=tasks.auto_pack, auto_pack_station=tasks.auto_pack_station,
        auto_pack_delay_s=tasks.auto_pack_delay_s, auto_pack_short_at=tasks.auto_pack_short_at, plugins=list(site.plugins), chestny_znak=cz,
    )


def _path(base: Path, value: str) -> str:
    p = Path(value)
    return str(p if p.is_absolute() else base / p)


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
                 mqtt_password_file: str | None = None, tls_ca: str | None = None,
                 mqtt_keys_file: str | None = None, web_port: int = 0,
                 warehouse: str = "main", auto_pack: bool = False, auto_pack_short_at: int = 0,
                 staff: dict[str, str] | None = None,
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
    if mqtt_keys_file:
        lines.append(f"keys_file = {q(mqtt_keys_file)}")
    lines += ["", "[printer]", 'kind = "virtual"', f"out_dir = {q(labels_dir)}"]
    if label_mm:
        lines += ["", "[label]", f"width_mm = {label_mm[0]}", f"height_mm = {label_mm[1]}", f"dpi = {int(dpi)}"]
    lines += ["", "[tasks]",
              f"auto_pack = {'true' if auto_pack else 'false'}"]
    if auto_pack_short_at:
        lines.append(f"auto_pack_short_at = {int(auto_pack_short_at)}")
    for name, pin in (staff or {"Демо": "1234"}).items():
        lines += ["", "[[staff]]", f"name = {q(name)}", f"pin_hash = {q(hash_pin(pin))}"]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
