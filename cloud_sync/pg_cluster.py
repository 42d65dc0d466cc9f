"""A throwaway PostgreSQL cluster for tests and benchmarks (a development facility, never used in service).

`Cluster` runs Debian's `postgresql` binaries (`/usr/lib/postgresql/<version>/bin`, or `MARKETSYNC_PG_BIN`):
`initdb` into a fresh temporary directory, the server listening on a unix socket in that directory and on a
free TCP port of 127.0.0.1, trust authentication, durability off (fsync, synchronous_commit: a test cluster
is thrown away). PostgreSQL refuses to run as root: started as root, the cluster runs as the unprivileged
`postgres` system user the Debian package creates (`runuser`). `stop()` stops it and removes the directory.

A run killed outright leaves nothing behind either: a watchdog process (`--watch`) removes the cluster when
the process that started it is gone. `python -m cloud_sync.pg_cluster` starts one and prints its URL until interrupted (handy by hand).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN_AS = "postgres"  # the system user of Debian's postgresql package


def bin_dir() -> Path:
    """Where the PostgreSQL server binaries are (the newest installed version)."""
    explicit = os.environ.get("MARKETSYNC_PG_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: install Debian's postgresql "
                           "(scripts/install-system-deps.sh) or set MARKETSYNC_PG_BIN")
    return Path(found[-1]).parent


def available() -> bool:
    try:
        bin_dir()
    except RuntimeError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One throwaway PostgreSQL server (see the module doc); `url` is where to connect once started."""

    def __init__(self, max_connections: int = 400) -> None:
        self.max_connections = max_connections  # bench/scale.py's 3 processes of 40 accounts' jobs need more
        self.dir = Path(tempfile.mkdtemp(prefix="marketsync-pg-"))
        self.port = _free_port()
        self.url = ""
        self._bin = bin_dir()
        self._as_user = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self._bin / args[0]), *args[1:]]
        if self._as_user:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        if self._as_user:
            shutil.chown(self.dir, user=RUN_AS)
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                  "--no-sync", "--no-instructions")
        options = (f"-k {self.dir} -p {self.port} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off"
                   f" -c full_page_writes=off -c max_connections={self.max_connections} -c shared_buffers=64MB"
                   " -c max_locks_per_transaction=256 -c log_min_messages=fatal")
        try:
            self._run("pg_ctl", "-D", str(data), "-l", str(self.dir / "server.log"), "-o", options, "-w",
                      "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = (self.dir / "server.log").read_text(errors="replace") if (self.dir / "server.log").exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log[-2000:]}") from None
        self.url = f"postgresql://postgres@/postgres?host={self.dir}&port={self.port}"
        # a run killed outright (SIGKILL, a CI timeout) still leaves no server behind: a watchdog process
        # stops and removes the cluster once the process that started it is gone
        subprocess.Popen([sys.executable, "-m", "cloud_sync.pg_cluster", "--watch", str(os.getpid()), str(self.dir)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, cwd=str(Path(__file__).resolve().parents[1]))
        return self.url

    def stop(self) -> None:
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _watch(parent: int, directory: Path) -> None:
    """Wait for `parent` to end, then stop the cluster in `directory` (if still there) and remove it."""
    while directory.exists():
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            break
        time.sleep(1.0)
    if (directory / "data" / "postmaster.pid").exists():
        cmd = [str(bin_dir() / "pg_ctl"), "-D", str(directory / "data"), "-m", "immediate", "-w", "stop"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        subprocess.run(cmd, check=False, capture_output=True, timeout=60)
    shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--watch":
        _watch(int(sys.argv[2]), Path(sys.argv[3]))
        return
    with Cluster() as cluster:
        print(cluster.url, flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        time.sleep(0)


if __name__ == "__main__":
    main()
