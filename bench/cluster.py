"""A private Postgres cluster for one benchmark run: initdb in a temporary folder, a free port.

The production scenarios (a large backlog, a held xmin horizon) need a server that nothing else
uses, with autovacuum on as Postgres ships it: never the machine's shared server. Settings are
the server's defaults except where named here: `fsync = off` (the run measures the queue, not
the disk), a socket folder and port of the cluster's own, `max_connections = 200`, and
pg_stat_statements loaded (to count the buffers each queue's claims read). The
binaries are the newest found in /usr/lib/postgresql/*/bin. As root, the server runs as the
`postgres` user (Postgres refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

# What the cluster changes from the server's defaults (shown in the report). pg_stat_statements
# counts the buffers each queue's claims read (the held horizon's measure), nested statements too.
SETTINGS = {
    "fsync": "off",
    "max_connections": "200",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
}


def bin_dir() -> Path:
    """The newest Postgres binaries installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise RuntimeError("no Postgres binaries under /usr/lib/postgresql/*/bin")
    return found[-1].parent


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One private server, started on creation; `close()` stops it and deletes its files."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgjobs-bench-"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("as root, a private cluster needs a 'postgres' user") from None
            self.user = "postgres"
            shutil.chown(self.root, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            **SETTINGS,
        }
        with (self.data / "postgresql.conf").open("a") as f:
            f.writelines(f"{key} = {value}\n" for key, value in conf.items())
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                break
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def url(self, dbname: str) -> str:
        """A URL for one database of the cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new database; its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def version(self) -> str:
        """The server's version string."""
        with psycopg.connect(self.url("postgres")) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def _run(self, exe: str, *args: str) -> None:
        cmd = [str(self.bin / exe), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def close(self) -> None:
        """Stop the server at once and remove its folder."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
