"""A PgBouncer of the test's own, in transaction pooling, in front of the test's Postgres.

Debian's package (`make test` installs it, as it does Chromium): PgBouncer 1.18,
which gives each transaction whichever server connection is free and does not
follow named prepared statements from one server connection to another, as
most managed Postgres' poolers behave. It listens on a free port of 127.0.0.1,
trusts every client (the users in its auth file), and keeps no more than
`pool_size` server connections per database and user, so that the clients share
them. A test may stop and restart it: it is the test's alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

#: Where Debian installs it; $PGJOBS_PGBOUNCER names another.
PGBOUNCER = os.environ.get("PGJOBS_PGBOUNCER", "/usr/sbin/pgbouncer")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """One PgBouncer process in front of the server that `server_url` names."""

    def __init__(self, server_url: str, pool_size: int = 5) -> None:
        if not os.access(PGBOUNCER, os.X_OK):
            raise RuntimeError(
                f"no PgBouncer at {PGBOUNCER}: `make test` installs Debian's package "
                "(apt-get install pgbouncer), or set $PGJOBS_PGBOUNCER"
            )
        info = psycopg.conninfo.conninfo_to_dict(server_url)
        self.user = str(info.get("user") or "postgres")
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgjobs-pgbouncer-"))
        self.logfile = self.root / "pgbouncer.log"
        (self.root / "users.txt").write_text(f'"{self.user}" ""\n')
        backend = f"host={info.get('host') or '127.0.0.1'} port={info.get('port') or 5432}"
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            # Any database name, on the test's server, as the client's own user.
            f"* = {backend}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\n"
            f"admin_users = {self.user}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 200\n"
            f"logfile = {self.logfile}\n"
        )
        self._user: str | None = None
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root: `-u` drops to a user that must read
            # its files and write its log.
            self._user = "nobody"
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, self._user)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, database_url: str) -> str:
        """`database_url` (a database of the server behind) through this PgBouncer."""
        return psycopg.conninfo.make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    def start(self) -> None:
        """Start it, and wait until it takes connections."""
        args = [PGBOUNCER, *(("-u", self._user) if self._user else ()), "-q"]
        self.proc = subprocess.Popen(
            [*args, str(self.root / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PgBouncer did not start:\n{self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop it at once (SIGTERM: every client and server connection is closed)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop it, stay down `down_for` seconds, start it again on the same port."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def servers(self) -> list[dict[str, Any]]:
        """Its server connections (SHOW SERVERS on its admin console)."""
        conn = psycopg.connect(
            f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.user}",
            autocommit=True,
            prepare_threshold=None,
        )
        with conn, conn.cursor() as cur:
            cur.execute("SHOW SERVERS")
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
