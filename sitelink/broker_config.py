"""What a real Mosquitto needs for the site link, written by `marketsync link broker-config`: TLS (a CA
and a server certificate made here), a password file (Mosquitto 2's PBKDF2 hashes, or its own
`mosquitto_passwd`), the ACL of directions (`acl_text`: a site publishes only what goes up from it
and reads only what comes down to it; the cloud the reverse), the envelope keys of each site
(`sitelink.keys`) and the listener's config for /etc/mosquitto/conf.d (see systemd/mosquitto/), which
binds each client id to its user (`use_username_as_clientid`): no password takes over another user's
session.

The same pieces configure the project's own local broker for tests, benchmarks and the demo
(`marketsync.broker`, which is not shipped with the link).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from sitelink import keys
from sitelink.link import CLOUD, PREFIX, topic_root

CLOUD_USER = "cloud"


class BrokerError(RuntimeError):
    """The broker cannot be configured (a bad site id) or started (missing, bad config, port taken);
    the message says why."""


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """A password-file hash in Mosquitto 2's PBKDF2-SHA512 format (`$7$iterations$salt$hash`)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, dklen=64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str], *, use_tool: bool = True) -> None:
    """Write a Mosquitto password file (mode 600): `mosquitto_passwd` when present, else our own hashes."""
    path = Path(path)
    tool = shutil.which("mosquitto_passwd") if use_tool else None
    path.write_text("")
    os.chmod(path, 0o600)
    if tool:
        for user, password in users.items():
            subprocess.run(
                [tool, "-b", str(path), user, password], check=True, capture_output=True, timeout=30
            )
    else:
        path.write_text("".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in users.items()))
    os.chmod(path, 0o600)


def check_site_id(site: str, cloud_user: str = CLOUD_USER) -> None:
    """A site id fit for topics, the ACL and the password file: not empty, no MQTT wildcard, no `/`, no
    whitespace or `:`, and not the cloud's own name."""
    if not site or any(c in site for c in "/+#:") or any(c.isspace() for c in site) or site == cloud_user:
        raise BrokerError(f"bad site id for the broker ACL: {site!r}")


def member_acl(user: str, prefix: str = PREFIX) -> list[str]:
    """The ACL of one cloud process's member of the share group: it reads what the sites send (through
    `$share/<group>/ms/v1/+/up`) and acknowledges it; the sending part stays the cloud user's."""
    return [f"user {user}", f"topic read {prefix}/+/up", f"topic write {prefix}/+/ack/down", ""]


def acl_text(sites: list[str], cloud_user: str = CLOUD_USER, *, cloud_processes: int = 0,
             with_cloud: bool = True, prefix: str = PREFIX, site_user: str = "") -> str:
    """The ACL of directions. Site X publishes only `ms/v1/X/up` (its messages), `ms/v1/X/ack/up` (its
    acknowledgements of the cloud's messages) and `ms/v1/X/state` (its presence), and reads only
    `ms/v1/X/down`, `ms/v1/X/ack/down` and the cloud's presence `ms/v1/cloud/state`. The cloud the
    reverse: publishes `ms/v1/+/down`, `ms/v1/+/ack/down` and its own presence; reads `+/up`, `+/ack/up`
    and every `+/state`. Anything else is denied (Mosquitto: a denied publish is not delivered, a
    subscription to a topic one may not read delivers nothing).

    A seller of several on one installation (`tenant_acl`): the same on its own topic root `prefix`
    (`ms/t/<id>/v1`), its users' names starting with `site_user` (`<id>.`): nothing outside its tree."""
    lines = [
        "# marketsync site link: who may publish (write) and read what. Site X sends up, the cloud down;",
        "# nothing else is allowed (written by `marketsync link broker-config`).",
        "",
    ]
    if with_cloud:
        lines += [
            f"user {cloud_user}",
            f"topic write {prefix}/+/down",
            f"topic write {prefix}/+/ack/down",
            f"topic write {prefix}/{CLOUD}/state",
            f"topic read {prefix}/+/up",
            f"topic read {prefix}/+/ack/up",
            f"topic read {prefix}/+/state",
            "",
        ]
        for n in range(1, cloud_processes + 1):
            lines += member_acl(f"{cloud_user}-{n}", prefix)
    for site in sites:
        check_site_id(site)
        lines += [
            f"user {site_user}{site}",
            f"topic write {prefix}/{site}/up",
            f"topic write {prefix}/{site}/ack/up",
            f"topic write {prefix}/{site}/state",
            f"topic read {prefix}/{site}/down",
            f"topic read {prefix}/{site}/ack/down",
            f"topic read {prefix}/{CLOUD}/state",
            "",
        ]
    return "\n".join(lines)


def tenant_users(tenant: str, sites: list[str], cloud_processes: int = 0) -> dict[str, str]:
    """The broker users of a seller of several (by role: "cloud", "cloud-N", each site id): `<id>.cloud`,
    `<id>.cloud-N` (the members of a share group) and `<id>.<site>`."""
    topic_root(tenant)  # a bad id is refused here too
    for site in sites:
        check_site_id(site)
    return {CLOUD_USER: f"{tenant}.{CLOUD_USER}",
            **{f"{CLOUD_USER}-{n}": f"{tenant}.{CLOUD_USER}-{n}" for n in range(1, cloud_processes + 1)},
            **{site: f"{tenant}.{site}" for site in sites}}


def tenant_acl(tenant: str, sites: list[str], *, cloud_processes: int = 0) -> str:
    """The ACL block of one seller of several: its cloud user and its sites' users, each only in the
    seller's own tree `ms/t/<id>/v1` (appended to the broker's acl file)."""
    text = acl_text(sites, f"{tenant}.{CLOUD_USER}", cloud_processes=cloud_processes, prefix=topic_root(tenant),
                    site_user=f"{tenant}.")
    return text.replace("# nothing else is allowed (written by `marketsync link broker-config`).",
                        f"# seller {tenant}: nothing outside ms/t/{tenant}/v1 (written by `marketsync tenant add`).")


def write_tenant_broker(out: str | Path, tenant: str, sites: list[str], *, cloud_processes: int = 0,
                        use_tool: bool = False) -> dict[str, str]:
    """A seller's part of the broker's config in `out`: `acl` (its block, to append to the broker's acl),
    `passwd` (its users' hashed passwords, to append to the broker's passwd) and `credentials/` (mode 700:
    `<user>.password` of each user, and the envelope keys: `<id>.cloud.keys` every site's, `<site>.keys`
    each site's). Returns the passwords by broker user (shown nowhere else)."""
    users = tenant_users(tenant, sites, cloud_processes)
    out = Path(out)
    creds = out / "credentials"
    creds.mkdir(parents=True, exist_ok=True)
    os.chmod(creds, 0o700)
    cloud_password = secrets.token_urlsafe(24)
    # the members of a share group speak with the cloud's password (one party), as broker-config's do
    passwords = {user: cloud_password if role.startswith(CLOUD_USER) else secrets.token_urlsafe(24)
                 for role, user in users.items()}
    write_password_file(out / "passwd", passwords, use_tool=use_tool)
    (out / "acl").write_text(tenant_acl(tenant, sites, cloud_processes=cloud_processes))
    os.chmod(out / "acl", 0o600)
    for role, user in users.items():
        if role.startswith(f"{CLOUD_USER}-"):
            continue  # a member's password is the cloud's
        path = creds / f"{user}.password"
        path.write_text("")
        os.chmod(path, 0o600)
        path.write_text(passwords[user] + "\n")
    keys.provision(creds, sites, users[CLOUD_USER])
    return passwords


def make_tls_files(
    directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> dict[str, Path]:
    """A CA and a server certificate for `hosts` signed by it (EC P-256, 10 years); returns the paths
    `ca`, `cert`, `key` (and `ca_key`, which a real deployment keeps off the broker box)."""
    # lazy: cryptography comes with the cloud's extra only; every `marketsync link` command imports this
    # module, and an edge box runs `link status` without cryptography
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "marketsync site-link CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    no_enc = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    paths = {
        name: directory / f"{name.replace('_', '-')}.{ext}"
        for name, ext in (("ca", "crt"), ("ca_key", "key"), ("cert", "crt"), ("key", "key"))
    }
    paths["ca"].write_bytes(ca_cert.public_bytes(pem))
    paths["cert"].write_bytes(cert.public_bytes(pem))
    for name, k in (("ca_key", ca_key), ("key", key)):
        paths[name].write_bytes(k.private_bytes(pem, pkcs8, no_enc))
        os.chmod(paths[name], 0o600)
    return paths


# ---------------------------------------------------------------- a real deployment

DEPLOY_DIR = "/etc/mosquitto/marketsync"

DEPLOY_CONF = """\
# marketsync site link: the broker's listener for the cloud and the sites.
# Installed as /etc/mosquitto/conf.d/marketsync.conf (Debian's mosquitto.service reads conf.d);
# its files live in {dir}/ and are written by `marketsync link broker-config`.
# TLS only, a username/password per site and one for the cloud, and an ACL of directions: site X
# publishes only ms/v1/X/up, ms/v1/X/ack/up and ms/v1/X/state and reads only ms/v1/X/down,
# ms/v1/X/ack/down and ms/v1/cloud/state; the cloud the reverse. Anonymous clients are refused.
listener {port}
cafile {dir}/ca.crt
certfile {dir}/server.crt
keyfile {dir}/server.key
tls_version tlsv1.2
allow_anonymous false
password_file {dir}/passwd
acl_file {dir}/acl
# A client's id is its user name, whatever id it asks for: a site's password can never take over the
# cloud's (or another site's) session. Each side keeps one persistent session under its own name.
use_username_as_clientid true

# A site may be away for days: keep its session (queued QoS 1 messages) meanwhile. The link's
# own outbox is the real buffer; this only saves work when the site returns.
persistent_client_expiration 14d
max_queued_messages 100000
max_inflight_messages 0
"""


def deploy_conf(port: int = 8883, directory: str = DEPLOY_DIR) -> str:
    return DEPLOY_CONF.format(port=port, dir=directory)


# Where the unit drop-in below goes, relative to a broker-config or bridge-config output folder and on the box.
SERVICE_DROPIN = "mosquitto.service.d/marketsync-limits.conf"
SERVICE_DROPIN_DIR = "/etc/systemd/system/mosquitto.service.d"
BROKER_OPEN_FILES = 65536

SERVICE_DROPIN_TEXT = f"""\
# marketsync: a drop-in for Debian's mosquitto.service, installed as
# {SERVICE_DROPIN_DIR}/marketsync-limits.conf (then `systemctl daemon-reload` and a restart).
# Each connected site holds an open file of the broker, and the unit leaves systemd's default soft
# limit of 1024 open files: without this a broker stops taking sites at about a thousand (past the
# limit their TLS handshakes fail and they never connect; bench/broker_sites.py --broker-nofile shows it).
[Service]
LimitNOFILE={BROKER_OPEN_FILES}
"""


def write_service_dropin(out: Path) -> Path:
    path = out / SERVICE_DROPIN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SERVICE_DROPIN_TEXT)
    return path


def write_deployment(
    out: str | Path,
    sites: list[str],
    *,
    hostnames: tuple[str, ...] = ("localhost",),
    port: int = 8883,
    directory: str = DEPLOY_DIR,
    cloud_processes: int = 0,
) -> dict[str, str]:
    """Write everything a real broker needs into `out`: marketsync.conf, the CA and server certificate,
    the password file, the ACL, and in `credentials/` (mode 600) what to hand to the cloud and each site:
    `<user>.password` and the envelope keys, `<site>.keys` (that site's) and `cloud.keys` (every site's).
    Returns the passwords by user (shown nowhere else)."""
    for site in sites:
        check_site_id(site)
        if site.startswith(f"{CLOUD_USER}-") and cloud_processes:
            raise BrokerError(f"site id {site!r} would be a cloud process's user name")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "credentials").mkdir(exist_ok=True)
    os.chmod(out / "credentials", 0o700)
    tls = make_tls_files(out / "tls-tmp", hosts=hostnames)
    for name, target in (
        ("ca", "ca.crt"),
        ("ca_key", "ca.key"),
        ("cert", "server.crt"),
        ("key", "server.key"),
    ):
        tls[name].replace(out / target)
    (out / "tls-tmp").rmdir()
    passwords = {CLOUD_USER: secrets.token_urlsafe(24), **{s: secrets.token_urlsafe(24) for s in sites}}
    # the cloud's processes as members of the share group: one user each (client ids are user names), the
    # cloud's password (one party; `[link] member_username = "cloud-{instance}"`)
    passwords.update({f"{CLOUD_USER}-{n}": passwords[CLOUD_USER] for n in range(1, cloud_processes + 1)})
    write_password_file(out / "passwd", passwords)
    (out / "acl").write_text(acl_text(sites, cloud_processes=cloud_processes))
    os.chmod(out / "acl", 0o600)
    (out / "marketsync.conf").write_text(deploy_conf(port, directory))
    write_service_dropin(out)
    for user, password in passwords.items():
        if user.startswith(f"{CLOUD_USER}-") and user not in sites:
            continue  # a member's password is the cloud's
        path = out / "credentials" / f"{user}.password"
        path.write_text("")
        os.chmod(path, 0o600)
        path.write_text(password + "\n")
    keys.provision(out / "credentials", sites, CLOUD_USER)
    return passwords
