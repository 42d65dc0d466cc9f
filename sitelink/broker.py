"""A real Mosquitto for tests, benchmarks and the demo: our own process on a free 127.0.0.1 port, its
config, persistence and log in a temporary directory (never the system broker on 1883).

`Broker()` is open (anonymous) by default. `Broker(secure=True, sites=[...])` is configured the way a
real deployment is (systemd/mosquitto/): TLS with a CA and server certificate generated here, a
username/password per site and one for the cloud, and an ACL that lets site X read and write only
`ms/v1/X/#` (the cloud all of `ms/v1/#`); anonymous clients are refused.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

MOSQUITTO = os.environ.get("MARKETSYNC_MOSQUITTO", "/usr/sbin/mosquitto")
CLOUD_USER = "cloud"


class BrokerError(RuntimeError):
    """Mosquitto could not be started (missing, bad config, port taken); the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def acl_text(sites: list[str], cloud_user: str = CLOUD_USER) -> str:
    """The ACL: the cloud reads and writes every site's topics, each site only its own."""
    lines = [
        "# marketsync site link: each site touches only ms/v1/<its id>/#; all may read the cloud's presence",
        "pattern read ms/v1/cloud/state",
        "",
        f"user {cloud_user}",
        "topic readwrite ms/v1/#",
        "",
    ]
    for site in sites:
        if not site or any(c in site for c in "/+#") or site == cloud_user:
            raise BrokerError(f"bad site id for the broker ACL: {site!r}")
        lines += [f"user {site}", f"topic readwrite ms/v1/{site}/#", ""]
    return "\n".join(lines)


def make_tls_files(
    directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> dict[str, Path]:
    """A CA and a server certificate for `hosts` signed by it (EC P-256, 10 years); returns the paths
    `ca`, `cert`, `key` (and `ca_key`, which a real deployment keeps off the broker box)."""
    import datetime as dt
    import ipaddress

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


class Broker:
    """Our own Mosquitto. Use as a context manager, or start()/stop(); restart() keeps port and data."""

    def __init__(
        self,
        *,
        port: int | None = None,
        workdir: str | Path | None = None,
        secure: bool = False,
        sites: list[str] | None = None,
        passwords: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        max_queued_messages: int = 1_000_000,
        use_passwd_tool: bool = True,
    ):
        if not host.startswith("127.") and host != "localhost":
            raise BrokerError("the project's own broker listens on the loopback only")
        self.host = host
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="marketsync-broker-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.secure = secure
        self.sites = list(sites or [])
        self.max_queued_messages = max_queued_messages
        self.use_passwd_tool = use_passwd_tool
        self.passwords: dict[str, str] = {}
        if secure:
            self.passwords = {CLOUD_USER: secrets.token_urlsafe(18)}
            self.passwords.update({s: secrets.token_urlsafe(18) for s in self.sites})
            self.passwords.update(passwords or {})
        self.tls: dict[str, Path] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._configured = False

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def ca_file(self) -> str | None:
        return str(self.tls["ca"]) if self.tls else None

    def credentials(self, user: str) -> tuple[str, str]:
        """(username, password) of the cloud (`"cloud"`) or a site, in secure mode."""
        return user, self.passwords[user]

    def link_settings(self, site: str | None = None) -> dict[str, Any]:
        """LinkConfig keyword arguments to reach this broker as the cloud (site=None) or as `site`."""
        out: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.secure:
            user = site or CLOUD_USER
            out.update(username=user, password=self.passwords[user], tls_ca=self.ca_file)
        return out

    def _configure(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            "# written by marketsync (sitelink.broker) for a local run",
            "per_listener_settings false",
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 5",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 0",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            f"listener {self.port} {self.host}",
        ]
        if self.secure:
            self.tls = make_tls_files(self.workdir / "tls")
            write_password_file(self.workdir / "passwd", self.passwords, use_tool=self.use_passwd_tool)
            acl = self.workdir / "acl"
            acl.write_text(acl_text(self.sites))
            os.chmod(acl, 0o600)
            lines += [
                f"cafile {self.tls['ca']}",
                f"certfile {self.tls['cert']}",
                f"keyfile {self.tls['key']}",
                "tls_version tlsv1.2",
                "allow_anonymous false",
                f"password_file {self.workdir / 'passwd'}",
                f"acl_file {acl}",
            ]
        else:
            lines.append("allow_anonymous true")
        self.config_path.write_text("\n".join(lines) + "\n")
        self._configured = True

    def start(self, timeout: float = 10.0) -> Broker:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not Path(MOSQUITTO).exists():
            raise BrokerError(f"mosquitto not found at {MOSQUITTO} (install the Debian package 'mosquitto')")
        if not self._configured:
            self._configure()
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.03)
            err = b""
            if self.proc.poll() is None:
                self.proc.kill()
            else:
                err = self.proc.stderr.read() if self.proc.stderr else b""
            self.proc.wait()
            tail = self._log_tail()
            if time.monotonic() >= deadline or b"Address already in use" not in err + tail.encode():
                self.proc = None
                raise BrokerError(
                    f"mosquitto did not start on port {self.port}: {err.decode(errors='replace')} {tail}"
                )
            time.sleep(0.2)  # the old socket is still closing: try again on the same port

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-800:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: Mosquitto saves its sessions and queues to disk)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a power cut would."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None and proc.stderr:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- a real deployment

DEPLOY_DIR = "/etc/mosquitto/marketsync"

DEPLOY_CONF = """\
# marketsync site link: the broker's listener for the cloud and the sites.
# Installed as /etc/mosquitto/conf.d/marketsync.conf (Debian's mosquitto.service reads conf.d);
# its files live in {dir}/ and are written by `marketsync link broker-config`.
# TLS only, a username/password per site and one for the cloud, and an ACL: site X may read and
# write ms/v1/X/# only; the cloud all of ms/v1/#. Anonymous clients are refused.
listener {port}
cafile {dir}/ca.crt
certfile {dir}/server.crt
keyfile {dir}/server.key
tls_version tlsv1.2
allow_anonymous false
password_file {dir}/passwd
acl_file {dir}/acl

# A site may be away for days: keep its session (queued QoS 1 messages) meanwhile. The link's
# own outbox is the real buffer; this only saves work when the site returns.
persistent_client_expiration 14d
max_queued_messages 100000
max_inflight_messages 0
"""


def deploy_conf(port: int = 8883, directory: str = DEPLOY_DIR) -> str:
    return DEPLOY_CONF.format(port=port, dir=directory)


def write_deployment(
    out: str | Path,
    sites: list[str],
    *,
    hostnames: tuple[str, ...] = ("localhost",),
    port: int = 8883,
    directory: str = DEPLOY_DIR,
) -> dict[str, str]:
    """Write everything a real broker needs into `out`: marketsync.conf, the CA and server certificate,
    the password file, the ACL, and `credentials/<user>.password` (mode 600) to hand to the cloud and
    each site. Returns the passwords by user (shown nowhere else)."""
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
    write_password_file(out / "passwd", passwords)
    (out / "acl").write_text(acl_text(sites))
    os.chmod(out / "acl", 0o600)
    (out / "marketsync.conf").write_text(deploy_conf(port, directory))
    for user, password in passwords.items():
        path = out / "credentials" / f"{user}.password"
        path.write_text(password + "\n")
        os.chmod(path, 0o600)
    return passwords
