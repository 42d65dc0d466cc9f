"""Sites spread over regional brokers: what `marketsync link bridge-config` writes for one region — a
regional Mosquitto (TLS, a password per site of the region, the ACL of directions for those sites only)
and its bridge to the central broker, plus the lines the central broker adds for that bridge.

The bridge is a client of the central broker with its own user `bridge-<region>` (its client id is that
user: `use_username_as_clientid`), over TLS with the central broker's CA, speaking MQTT v5 (the batch MACs
ride as user properties, which an MQTT 3.1.1 bridge would drop). It forwards only the region's sites'
topic trees: `ms/v1/<site>/up`, `ack/up` and `state` out, `ms/v1/<site>/down`, `ack/down` and the cloud's
presence `ms/v1/cloud/state` in. The central broker's ACL gives the bridge user exactly the rights of
its sites together, so the per-site ACL holds on both brokers: a site can touch only its own topics on
the regional one, and the bridge only its region's sites' topics on the central one.

At QoS 1 with a kept session (`cleansession false`) a bridge that loses the central broker sends what it
queued meanwhile when it is back; whatever is lost on the way (a broker killed) is sent again from the
senders' outboxes, and the receivers' inboxes apply nothing twice (sitelink.link).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sitelink.broker_config import (
    CLOUD_USER,
    DEPLOY_DIR,
    BrokerError,
    acl_text,
    check_site_id,
    deploy_conf,
    make_tls_files,
    mosquitto_hash,
    write_password_file,
    write_service_dropin,
)

PREFIX = "ms/v1"
CENTRAL_CA = "central-ca.crt"  # the central broker's CA, beside the regional broker's own files


def bridge_user(region: str) -> str:
    return f"bridge-{region}"


def check_region(region: str) -> None:
    if not region or any(c in region for c in "/+#:") or any(c.isspace() for c in region):
        raise BrokerError(f"bad region name: {region!r}")


def bridge_topics(sites: list[str]) -> list[str]:
    """The bridge's `topic` lines: each site's own tree, in its direction, at QoS 1; the cloud's presence in."""
    lines = []
    for site in sites:
        check_site_id(site)
        lines += [f"topic {PREFIX}/{site}/{t} out 1" for t in ("up", "ack/up", "state")]
        lines += [f"topic {PREFIX}/{site}/{t} in 1" for t in ("down", "ack/down")]
    lines.append(f"topic {PREFIX}/{CLOUD_USER}/state in 1")
    return lines


def bridge_conf(region: str, sites: list[str], *, central_host: str, central_port: int, password: str,
                central_ca: str, tls: bool = True, protocol: str = "mqttv311") -> str:
    """The regional broker's bridge section (a file of /etc/mosquitto/conf.d/): holds the bridge's
    password, so it is written mode 640 root:mosquitto."""
    check_region(region)
    user = bridge_user(region)
    lines = [
        f"# marketsync: the bridge of region {region} to the central broker (written by",
        "# `marketsync link bridge-config`); only the region's sites' topic trees cross it.",
        f"connection marketsync-{region}",
        f"address {central_host}:{central_port}",
        f"bridge_protocol_version {protocol}",
        f"remote_clientid {user}",
        f"remote_username {user}",
        f"remote_password {password}",
        f"local_clientid {user}-local",
    ]
    if tls:
        lines += [f"bridge_cafile {central_ca}", "bridge_tls_version tlsv1.2", "bridge_insecure false"]
    lines += [
        "cleansession false",
        "try_private true",
        "notifications false",
        "start_type automatic",
        "restart_timeout 1 10",
        "keepalive_interval 30",
        *bridge_topics(sites),
    ]
    return "\n".join(lines) + "\n"


def central_acl(region: str, sites: list[str]) -> str:
    """The central broker's ACL block of the region's bridge: the rights of its sites together."""
    user = bridge_user(region)
    lines = [f"# the bridge of region {region} (its sites: {', '.join(sites)})", f"user {user}"]
    for site in sites:
        check_site_id(site)
        lines += [f"topic write {PREFIX}/{site}/{t}" for t in ("up", "ack/up", "state")]
        lines += [f"topic read {PREFIX}/{site}/{t}" for t in ("down", "ack/down")]
    lines += [f"topic read {PREFIX}/{CLOUD_USER}/state", ""]
    return "\n".join(lines)


def write_bridge(
    out: str | Path,
    region: str,
    sites: list[str],
    *,
    central_host: str,
    central_port: int = 8883,
    hostnames: tuple[str, ...] = ("localhost",),
    port: int = 8883,
    directory: str = DEPLOY_DIR,
    passwords: dict[str, str] | None = None,
) -> dict[str, str]:
    """Write a region's files into `out`: `regional/` (the regional broker: marketsync.conf, TLS, passwd,
    acl of its sites, conf.d/zz-marketsync-bridge.conf with the bridge), `central/` (`acl-<bridge user>` and
    `passwd-<bridge user>`, to append to the central broker's acl and passwd) and `credentials/` (mode 600:
    each site's password on the regional broker, and the bridge's). Returns the passwords by user."""
    check_region(region)
    if not sites:
        raise BrokerError("a region needs at least one site")
    for site in sites:
        check_site_id(site)
    out = Path(out)
    regional, central, creds = out / "regional", out / "central", out / "credentials"
    for d in (regional, regional / "conf.d", central, creds):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(creds, 0o700)
    user = bridge_user(region)
    given = passwords or {}
    pw = {s: given.get(s) or secrets.token_urlsafe(24) for s in sites}
    bridge_pw = given.get(user) or secrets.token_urlsafe(24)
    tls = make_tls_files(regional / "tls-tmp", hosts=hostnames)
    for name, target in (("ca", "ca.crt"), ("ca_key", "ca.key"), ("cert", "server.crt"), ("key", "server.key")):
        tls[name].replace(regional / target)
    (regional / "tls-tmp").rmdir()
    write_password_file(regional / "passwd", pw)
    _private(regional / "acl", acl_text(sites, with_cloud=False))
    (regional / "marketsync.conf").write_text(deploy_conf(port, directory))
    write_service_dropin(regional)
    _private(regional / "conf.d" / "zz-marketsync-bridge.conf",
             bridge_conf(region, sites, central_host=central_host, central_port=central_port, password=bridge_pw,
                         central_ca=f"{directory}/{CENTRAL_CA}"))
    (central / f"acl-{user}").write_text(central_acl(region, sites))
    _private(central / f"passwd-{user}", f"{user}:{mosquitto_hash(bridge_pw)}\n")
    for name, secret in {**pw, user: bridge_pw}.items():
        _private(creds / f"{name}.password", secret + "\n")
    return {**pw, user: bridge_pw}


def _private(path: Path, text: str) -> None:
    path.write_text("")
    os.chmod(path, 0o600)
    path.write_text(text)
