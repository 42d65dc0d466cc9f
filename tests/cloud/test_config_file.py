"""cloud.toml read once, at load: every table typed, an unknown key or a wrong type stops the start with one
line naming the file and the key (never a secret), and config/cloud.toml documents exactly the keys the
cloud accepts, with the code's defaults."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.config import ConfigError, load_config, parse_config
from cloud_sync.config_sections import (
    AlertsConfig,
    AuthSettings,
    CloudFile,
    CloudSection,
    JobSettings,
    LinkSettings,
    PricingSettings,
    SecretsSettings,
    StockSection,
    read_tables,
)
from marketsync.cli import main as marketsync
from marketsync.procs import marketsync_argv, subprocess_run
from sitelink.config_file import accepted, written

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "cloud.toml"
TOKEN = "123456:bot-token-value-abcdefghijklmnop"


def problem(data: dict[str, Any], **kw: Any) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data, **kw)
    return str(e.value)


def test_the_shipped_cloud_toml_loads_and_shows_the_codes_defaults() -> None:
    cfg = load_config(SHIPPED, env={})
    tables = read_tables(tomllib.loads(SHIPPED.read_text()))
    assert tables.cloud == dataclasses.replace(CloudSection(), db_path="../var/cloud/cloud.sqlite")
    assert (tables.stock, tables.jobs, tables.link) == (StockSection(), JobSettings(), LinkSettings())
    assert (tables.pricing, tables.alerts, tables.auth, tables.secrets) == \
        (PricingSettings(), AlertsConfig(), AuthSettings(), SecretsSettings())
    assert tables.onec is None and tables.accounts == {}
    assert cfg.status_map == parse_config({}).status_map  # the map it shows is the built-in one
    assert Path(cfg.db_path).resolve() == SHIPPED.parent.parent / "var" / "cloud" / "cloud.sqlite"


def test_config_cloud_toml_documents_exactly_the_keys_the_cloud_accepts(documented_config) -> None:
    data = documented_config(SHIPPED)  # with its `# key = value` examples taken as written
    read_tables(data)  # nothing documented that the cloud would refuse...
    assert written(CloudFile, data) == accepted(CloudFile)  # ...and nothing accepted left undocumented


def test_an_unknown_key_or_a_wrong_type_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    assert problem({"alerts": {"chat_idd": "-100"}}) == (
        "cloud.toml: alerts.chat_idd: unknown key (allowed: base_url, chat_id, deadline_warning_s, dedup_window_s,"
        " fbo_cover_days, fbo_min_quantity, max_attempts, min_interval_s, tick_s, timeout_s, token_env, token_file)")
    assert problem({"jobs": {"orders_poll_s": "fast"}}) == 'cloud.toml: jobs.orders_poll_s: must be a number, got "fast"'
    assert problem({"jobs": {"order_poll_s": 5}}).startswith("cloud.toml: jobs.order_poll_s: unknown key")  # was dropped
    assert problem({"alert": {}}).startswith("cloud.toml: alert: unknown key (allowed: accounts, alerts, auth, cloud,")
    assert problem({"cloud": {"port": "8080"}}) == 'cloud.toml: cloud.port: must be a whole number, got "8080"'
    assert problem({"cloud": {"sync_on_start": "yes"}}) == \
        'cloud.toml: cloud.sync_on_start: must be true or false, got "yes"'
    assert problem({"pricing": {"large_drop_percent": "30%"}}) == \
        'cloud.toml: pricing.large_drop_percent: must be a number, got "30%"'
    assert problem({"pricing": {"rules": {"ozon": {"min_prise": 50}}}}).startswith(
        "cloud.toml: pricing.rules.ozon.min_prise: unknown key (allowed: crossed_out_supported,")
    assert problem({"pricing": {"rules": {"ozone": {}}}}).startswith("cloud.toml: pricing.rules.ozone: must be one of")
    assert problem({"auth": {"trusted_proxies": ["10.0.0.300/32"]}}).startswith(
        "cloud.toml: auth.trusted_proxies[1]: must be a network")
    assert problem({"secrets": {"keyfile": "x"}}) == "cloud.toml: secrets.keyfile: unknown key (allowed: key_file)"
    assert problem({"onec": {"encoding": "koi8-r"}}) == \
        'cloud.toml: onec.encoding: must be windows-1251 or utf-8, got "koi8-r"'
    assert problem({"onec": {"odata": {"login": "x"}}}) == "cloud.toml: onec.odata.base_url: required"
    assert problem({"status_map": {"ozon": {"delivered": "done"}}}).startswith(
        'cloud.toml: status_map.ozon.delivered: must be one of new, in_work,')
    assert problem({"status_map": {"wb": {}}}).startswith("cloud.toml: status_map.wb: must be one of wildberries,")
    assert problem({"stock": {"zero_guard_share": 20}}) == \
        "cloud.toml: stock.zero_guard_share: must be between 0 and 1, got 20.0"
    account = {"marketplace": "ozon", "base_url": "http://127.0.0.1:9"}
    assert problem({"accounts": {"oz": {**account, "marketplace": "ozn"}}}) == \
        'cloud.toml: accounts.oz.marketplace: must be one of wildberries, ozon, yandex_market, megamarket, got "ozn"'
    assert problem({"accounts": {"oz": {"marketplace": "ozon"}}}) == "cloud.toml: accounts.oz.base_url: required"
    assert problem({"accounts": {"oz": {**account, "allocation": {"share": 2}}}}) == \
        "cloud.toml: accounts.oz.allocation: share must be 0..1 and buffer >= 0"
    assert problem({"accounts": {"oz": {**account, "label_after": "asemble"}}}) == \
        'cloud.toml: accounts.oz.label_after: must be one of confirm, assemble, got "asemble"'
    assert problem({"accounts": {"oz": {**account, "enabled": "false"}}}) == \
        'cloud.toml: accounts.oz.enabled: must be true or false, got "false"'
    bad = tmp_path / "cloud.toml"
    bad.write_text('[alerts]\nchat_idd = "-100"\n')
    with pytest.raises(ConfigError, match=f"^{bad}: alerts.chat_idd: unknown key"):
        load_config(bad)


def test_secrets_never_appear_in_the_line() -> None:
    account = {"marketplace": "ozon", "base_url": "http://127.0.0.1:9"}
    lines = [
        problem({"alerts": {"token": TOKEN}}),
        problem({"link": {"password": 123456789}}),
        problem({"link": {"pasword": TOKEN}}),
        problem({"onec": {"password": ["s3cret-value"]}}),
        problem({"accounts": {"oz": {**account, "credentials": {"Api-Key": ["s3cret-value"]}}}}),
        problem({"accounts": {"oz": {**account, "credentials_env": {"Api-Key": "OZ_KEY"}}}}, env={"OTHER": TOKEN}),
    ]
    assert lines[0] == "cloud.toml: alerts.token: put the bot token in token_env or token_file, not in the config"
    assert lines[1] == "cloud.toml: link.password: must be text"
    assert lines[5] == "cloud.toml: accounts.oz.credentials_env.Api-Key: environment variable 'OZ_KEY' is not set"
    for line in lines:
        assert TOKEN not in line and "123456789" not in line and "s3cret" not in line and "\n" not in line


def test_the_parsed_sections_are_what_the_rooms_read() -> None:
    cfg = parse_config({
        "cloud": {"sync_on_start": False, "sync_wait_s": 5},
        "pricing": {"large_drop_percent": 5, "rules_tick_s": 10, "rules": {"ozon": {"min_price": 1000}}},
        "alerts": {"chat_id": -100123, "token_env": "BOT"}, "auth": {"secure_cookies": True},
        "secrets": {"key_file": "/k/secret.key"}, "onec": {"password": "p", "odata": {"base_url": "http://1c"}},
        "accounts": {"oz": {"marketplace": "ozon", "base_url": "http://127.0.0.1:9",
                            "credentials_secret": "account/oz"}},
    })
    assert (cfg.sync_on_start, cfg.sync_wait_s) == (False, 5.0)
    assert (cfg.pricing.large_drop_percent, cfg.pricing.rules_tick_s, cfg.pricing.rules) == \
        (5, 10.0, {"ozon": {"min_price": 1000}})
    assert cfg.alerts == AlertsConfig(chat_id="-100123", token_env="BOT")
    assert cfg.auth.secure_cookies and cfg.secrets.key_file == "/k/secret.key"
    assert cfg.onec is not None and cfg.onec.odata is not None and cfg.onec.odata.base_url == "http://1c"
    assert cfg.accounts["oz"].credentials_secret == "account/oz"
    empty = parse_config({})
    assert (empty.alerts, empty.onec, empty.pricing, empty.sync_on_start, empty.sync_wait_s) == \
        (None, None, PricingSettings(), True, 30.0)


BAD = '[cloud]\nport = 0\n\n[alerts]\nchat_idd = "-100"\n'


@pytest.mark.parametrize("argv", [
    ["cloud", "serve"], ["sync", "cards"], ["sync", "prices"], ["sync", "reports"], ["stock", "holds"],
    ["stock", "why", "MS-1", "--account", "wb"], ["cloud", "user", "list"], ["cloud", "token", "owner"],
    ["onec", "commission", "r1", "--odata"],
])
def test_every_command_that_loads_cloud_toml_stops_with_one_line(argv, tmp_path, capsys) -> None:
    bad = tmp_path / "cloud.toml"
    bad.write_text(BAD)
    extra = ["--db", str(tmp_path / "c.sqlite")] if argv[0] == "onec" else []
    code = marketsync([*argv, "--config", str(bad), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert f"{bad}: alerts.chat_idd: unknown key (allowed: base_url, chat_id," in err


def test_marketsync_cloud_serve_on_a_bad_file_exits_with_one_line(tmp_path) -> None:
    bad = tmp_path / "cloud.toml"
    bad.write_text(BAD.replace('chat_idd = "-100"', 'tick_s = "often"'))
    out = subprocess_run(marketsync_argv("cloud", "serve", "--config", str(bad)), timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f'marketsync cloud: {bad}: alerts.tick_s: must be a number, got "often"'
