"""A throwaway PostgreSQL for the tests: one cluster per test session (per xdist worker), on
127.0.0.1 with a free port and its own data dir, stopped at the end; a fresh database per test.

`initdb` refuses to run as root: as root the cluster runs as the `postgres` user (runuser)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = ("PostgreSQL server binaries (initdb, pg_ctl) are not on the PATH; install PostgreSQL 15+ "
                "(e.g. apt-get install postgresql) to run the PostgreSQL tests")


class Cluster:
    def __init__(self) -> None:
        if not (shutil.which("initdb") and shutil.which("pg_ctl")):
            pytest.skip(INSTALL_HINT)
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
        self.root.chmod(0o755)
        if self.as_user:
            shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off", "start")
        self._databases = 0

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self.as_user, *argv], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout}\n{done.stderr}")

    def uri(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        auth = user + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URI."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.uri(name)

    def execute(self, sql: str, uri: str | None = None) -> list[tuple[Any, ...]]:
        import adbc_driver_postgresql.dbapi as dbapi

        with dbapi.connect(uri or self.uri(), autocommit=True) as con, con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []

    def stop(self) -> None:
        subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
