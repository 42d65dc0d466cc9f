"""The demo's configuration files: `cloud.toml` and `edge.toml` written into the demo folder.

They use the same keys a real installation uses (see config/cloud.toml and config/edge.toml); only the
values point at the local sandboxes and the demo's own broker. Secrets (the sandboxes' tokens, the MQTT
passwords) go into files readable by their owner alone, referenced from the TOML, never into it.
Also the demo's names: its site (`SITE_ID`) and its seller accounts (`DEMO_ACCOUNTS`: two Wildberries
cabinets share the one 1C catalog and ledger, with their own allocation and prices; `ACCOUNT_NAMES` is each
marketplace's main account). The writers take
what they write as arguments and know nothing of the orchestrator (`marketsync.demo`), which uses them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

from edge_agent.config import write_config
from marketsync.onec_demo_files import WAREHOUSE_ID
from marketsync.procs import ServiceFailed, marketsync_argv, subprocess_run

SITE_ID = "site-1"  # the demo's one warehouse site
SHORT_AT_TASK = 3  # the demo's packer finds the shelf empty for the first line of its third task
# Marketplaces that push order events to the cloud (the demo registers the cloud's URL in their sandbox).
PUSHING = ("yandex_market", "megamarket", "ozon")
ACCOUNT_NAMES = {"wildberries": "wb-main", "ozon": "ozon-main", "yandex_market": "ym-main", "megamarket": "mm-main"}
# account -> marketplace: every account gets a sandbox of its own
DEMO_ACCOUNTS = {"wb-main": "wildberries", "wb-second": "wildberries", "ozon-main": "ozon", "ym-main": "yandex_market",
                 "mm-main": "megamarket"}
# what an account has of its own in cloud.toml beyond its marketplace, sandbox and warehouse
ACCOUNT_EXTRA = {
    "wb-main": ["", "[accounts.wb-main.prices_from_1c]  # its prices follow 1C's retail price type",
                'price_type = "Розничная"', "markup_percent = 10", 'rounding = "9"', "crossed_out_percent = 25",
                "min_margin_percent = 20"],
    "wb-second": ["allocation = { share = 0.5, buffer = 1 }  # the second cabinet lists half of what is free",
                  "", "[accounts.wb-second.prices_from_1c]  # and sells 15 % dearer, in round tens",
                  'price_type = "Розничная"', "markup_percent = 15", 'rounding = "10"', "min_margin_percent = 20"],
}


@dataclass
class CloudConfig:
    """What `write_cloud_config` wrote: the cloud.toml, and the secrets the demo uses afterwards."""

    path: Path
    onec_password_file: Path  # the password of the demo's 1C on the exchange
    push_tokens: dict[str, str] = field(default_factory=dict)  # account -> the secret part of its push URL


def _secret(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def write_cloud_config(folder: Path, *, db_path: Path, link: dict[str, Any], time_scale: float,
                       sandboxes: dict[str, dict[str, Any]], port: int = 0, db_url: str = "",
                       tenants_dir: str = "") -> CloudConfig:
    """The cloud's cloud.toml in `folder`: its database, the demo's broker (`link`: the broker's
    settings for the cloud), the demo's 1C login, the site, and one account per running sandbox
    (`sandboxes`: account name -> the sandbox's announcement, which names its marketplace). `port` 0: any
    free port; a fixed one lets the cloud come back at the same URL after a restart. `db_url`: the store on
    PostgreSQL (`[db] url`) instead of the SQLite file; `link` may name a `share_group` and `member_username`;
    `tenants_dir`: the installation hosts several sellers ([tenants] dir)."""
    secrets = folder / "secrets"
    lines = [
        "# written by `marketsync demo`: the cloud against the local sandboxes",
        "[cloud]",
        f"db_path = {_toml_value(str(db_path))}",
        'host = "127.0.0.1"',
        f"port = {int(port)}",
        f"default_warehouse = {_toml_value(WAREHOUSE_ID)}",
        f"time_scale = {float(time_scale)!r}",
        "sync_on_start = true",
        "",
        *([f"[db]\nurl = {_toml_value(db_url)}", ""] if db_url else []),
        *([f"[tenants]  # several sellers: `marketsync tenant add`\ndir = {_toml_value(tenants_dir)}", ""]
          if tenants_dir else []),
        "[jobs]",
        "orders_poll_s = 1.0",
        "actions_s = 0.3",
        "status_refresh_s = 5.0   # the demo's day is short: parcels are followed to the buyer within it",
        "follow_first_s = 15.0",
        "follow_max_s = 30.0",
        "",
        "[link]",
        f"host = {_toml_value(link['host'])}",
        f"port = {link['port']}",
    ]
    if "username" in link:
        pw = _secret(secrets / "mqtt-password", link["password"])
        lines += [f"username = {_toml_value(link['username'])}", f"password_file = {_toml_value(str(pw))}",
                  f"tls_ca = {_toml_value(link['tls_ca'])}"]
    if link.get("keys_file"):
        lines.append(f"keys_file = {_toml_value(link['keys_file'])}")
    for key in ("share_group", "member_username"):  # several cloud processes sharing the sites' traffic
        if link.get(key):
            lines.append(f"{key} = {_toml_value(link[key])}")
    onec_password = _secret(secrets / "onec-password", token_urlsafe(18))
    written = CloudConfig(folder / "cloud.toml", onec_password)
    lines += ["", "[onec]  # 1C's exchange with the cloud (the demo plays 1C: it takes the day's orders)",
              'login = "1c"', f"password_file = {_toml_value(str(onec_password))}"]
    lines += ["", f"[sites.{SITE_ID}]", 'name = "Склад Москва"', f"warehouses = [{_toml_value(WAREHOUSE_ID)}]", ""]
    for name, info in sandboxes.items():
        mp = info["marketplace"]
        credentials = dict(info["credentials"])
        options = dict(info.get("options", {}))  # the ids the sandbox announced (YM business, MM merchant)
        if mp in PUSHING:
            credentials["push_token"] = token_urlsafe(24)  # the secret part of the cloud's push URL
            options["push_sources"] = ["127.0.0.1/32"]  # the sandbox pushes from the loopback
            written.push_tokens[name] = credentials["push_token"]
        creds = _secret(secrets / f"{name}.json", json.dumps(credentials))
        lines += [
            f"[accounts.{name}]",
            f"marketplace = {_toml_value(mp)}",
            f"base_url = {_toml_value(info['url'])}",
            f"credentials_file = {_toml_value(str(creds))}",
            f"default_warehouse = {_toml_value(WAREHOUSE_ID)}",
        ]
        if options:
            lines.append(f"options = {_toml_value(options)}")
        lines += ACCOUNT_EXTRA.get(name, [])
        lines.append("")
    written.path.write_text("\n".join(lines), "utf-8")
    return written


def write_edge_config(folder: Path, link: dict[str, Any], register: dict[str, Any] | None = None, *,
                      auto_pack: bool = True) -> tuple[Path, Path]:
    """The site's edge.toml in `folder` through the edge's own writer (`link`: the broker's settings
    for the site), with the simulated packer on; 75x120 mm label stock takes every marketplace's
    label (WB's 58x40 ones too); `register`: the Честный знак sandbox as `sandbox serve` announced it
    (its codes are checked at packing; the token goes to a 0600 file). Returns the edge.toml and the
    folder the labels print to."""
    labels = folder / "labels"
    password_file = None
    if "username" in link:
        password_file = str(_secret(folder / "secrets" / "mqtt-password", link["password"]))
    path = write_config(
        folder / "edge.toml", site_id=SITE_ID, db_path=str(folder / "site.sqlite"), labels_dir=str(labels),
        mqtt_host=link["host"], mqtt_port=link["port"], mqtt_username=link.get("username"),
        mqtt_password_file=password_file, tls_ca=link.get("tls_ca"), mqtt_keys_file=link.get("keys_file"),
        warehouse=WAREHOUSE_ID,
        auto_pack=auto_pack, auto_pack_short_at=SHORT_AT_TASK if auto_pack else 0, staff={"Демо": "1234"}, label_mm=(75, 120),
    )
    if register:
        token = str(register["credentials"]["Authorization"]).removeprefix("Bearer ")
        token_file = _secret(folder / "secrets" / "cz-token", token)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"\n[chestny_znak]\nurl = {_toml_value(register['url'])}\n"
                     f"inn = {_toml_value(register['options']['inn'])}\ntoken_file = {_toml_value(str(token_file))}\n")
    return path, labels


def write_demo_owner(config: Path, folder: Path) -> tuple[Path, str]:
    """The demo's owner: `marketsync cloud user add owner --generate FILE` (the password goes to a 0600
    file in `folder`, never to the screen) and an API token the demo reads the cloud's events with
    (0600 file)."""
    password_file, token_file = folder / "owner-password", folder / "owner-api-token"
    for argv in (("cloud", "user", "add", "owner", "--role", "owner", "--generate", str(password_file)),
                 ("cloud", "token", "owner", "--label", "demo", "--out", str(token_file))):
        out = subprocess_run(marketsync_argv(*argv, "--config", str(config)))
        if out.returncode != 0:
            raise ServiceFailed(f"marketsync {' '.join(argv[:3])}: {out.stderr.strip() or out.stdout.strip()}")
    return password_file, token_file.read_text(encoding="utf-8").strip()
