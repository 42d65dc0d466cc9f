"""A real Mosquitto for tests, benchmarks and the demo: our own process on a free 127.0.0.1 port, its
config, persistence and log in a temporary directory (never the system broker on 1883).

`Broker()` is open (anonymous) by default. `Broker(secure=True, sites=[...])` is configured the way a
real deployment is (systemd/mosquitto/, `sitelink.broker_config`): TLS with a CA and server certificate
generated here, a username/password per site and one for the cloud, each client's id bound to its user
(`use_username_as_clientid`), the ACL of directions (`acl_text`: a site publishes only up, ack/up and its
state, reads only down, ack/down and the cloud's state; the cloud the reverse), and envelope keys per
site and direction (`keys_file(user)`, in `link_settings`); anonymous clients are refused.
This is a development and demo tool: production brokers are configured by `marketsync link broker-config`.
"""

from __future__ import annotations

import getpass
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sitelink import keys
from sitelink.broker_config import CLOUD_USER, BrokerError, acl_text, make_tls_files, write_password_file

MOSQUITTO = os.environ.get("MARKETSYNC_MOSQUITTO", "/usr/sbin/mosquitto")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        observers: list[str] | None = None,
        cloud_processes: int = 0,
        extra_acl: str = "",
        extra_conf: str = "",
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
        # test-only identities that may read and write every link topic (the soak's fault injector): never
        # the cloud's own, so connecting with one takes over nobody's session
        self.observers = list(observers or [])
        if secure:
            self.passwords.update({o: secrets.token_urlsafe(18) for o in self.observers})
        # members of the cloud's share group (`cloud-1`..: the cloud's password, sitelink.broker_config)
        self.cloud_processes = cloud_processes
        if secure:
            self.passwords.update({f"{CLOUD_USER}-{n}": self.passwords[CLOUD_USER]
                                   for n in range(1, cloud_processes + 1)})
        self.extra_acl = extra_acl  # more ACL blocks (a bridge's user on the central broker)
        self.extra_conf = extra_conf  # more config (a bridge to another broker)
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

    @property
    def keys_dir(self) -> Path:
        """Where the envelope keys are, in secure mode: `cloud.keys` and `<site>.keys` (sitelink.keys)."""
        return self.workdir / "keys"

    def keys_file(self, user: str) -> str:
        """The envelope key file of the cloud (`"cloud"`) or a site, in secure mode."""
        return str(self.keys_dir / f"{user}.keys")

    def link_settings(self, site: str | None = None, *, keys_from: Broker | None = None) -> dict[str, Any]:
        """LinkConfig keyword arguments to reach this broker as the cloud (site=None), a member of its
        share group (`cloud-N`: the cloud's keys) or as `site` (or an observer: its password, no keys of
        its own). `keys_from`: the broker whose envelope keys to use (a site on a regional broker signs
        with the keys the central one made)."""
        out: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.secure:
            user = site or CLOUD_USER
            key_user = CLOUD_USER if user.startswith(f"{CLOUD_USER}-") and user not in self.sites else user
            out.update(username=user, password=self.passwords[user], tls_ca=self.ca_file,
                       keys_file=(keys_from or self).keys_file(key_user))
        return out

    def _configure(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            "# written by marketsync (marketsync.broker) for a local run",
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
            acl.write_text(acl_text(self.sites, cloud_processes=self.cloud_processes)
                           + "".join(f"\nuser {o}\ntopic readwrite ms/v1/#\n" for o in self.observers)
                           + ("\n" + self.extra_acl if self.extra_acl else ""))
            os.chmod(acl, 0o600)
            self.keys_dir.mkdir(exist_ok=True)
            os.chmod(self.keys_dir, 0o700)
            keys.provision(self.keys_dir, self.sites, CLOUD_USER)
            lines += [
                f"cafile {self.tls['ca']}",
                f"certfile {self.tls['cert']}",
                f"keyfile {self.tls['key']}",
                "tls_version tlsv1.2",
                "allow_anonymous false",
                f"password_file {self.workdir / 'passwd'}",
                f"acl_file {acl}",
                "use_username_as_clientid true",
            ]
        else:
            lines.append("allow_anonymous true")
        if self.extra_conf:
            lines.append(self.extra_conf)
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
