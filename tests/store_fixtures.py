"""Real PostgreSQL and Redis servers for the tests, started on free loopback ports and stopped at the end.

Test modules import the fixtures they need (``from store_fixtures import postgres, redis_server``), like
``server_fixtures``; nothing is registered in conftest.py. Both come from Debian's packages
(``postgresql``, ``redis-server``; ``scripts/setup.sh`` installs them). PostgreSQL refuses to run as root,
so when the tests run as root its data folder belongs to the ``postgres`` user (or ``nobody``) and its
commands run as that user through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_fixtures import free_port

READY_SECONDS = 60.0


def debian_binary(name: str, pattern: str) -> str:
    """A server binary from PATH, else from Debian's versioned folder (``/usr/lib/postgresql/15/bin``)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(pattern), reverse=True)), None)
    if found is None:
        pytest.fail(f"{name} is not installed; run scripts/setup.sh --services (Debian's postgresql and redis-server).")
    return found


@dataclass
class Postgres:
    """A running PostgreSQL cluster; :meth:`new_database` gives each test a database of its own."""

    port: int
    user: str = "assistant"

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL 15 in a temporary folder on a free loopback port (trust auth, loopback only)."""
    import psycopg

    initdb = debian_binary("initdb", "/usr/lib/postgresql/*/bin/initdb")
    pg_ctl = debian_binary("pg_ctl", "/usr/lib/postgresql/*/bin/pg_ctl")
    owner = None
    if os.geteuid() == 0:
        owner = "postgres" if _user_exists("postgres") else "nobody"
    # Not under pytest's own temp folder: that one is private to the test user, and the server's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="assistant-pg-"))
    data, log = root / "data", root / "server.log"
    if owner:
        shutil.chown(root, user=owner)
    port = free_port()
    server = Postgres(port=port)
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    started = False
    try:
        subprocess.run(
            _as_server_user(
                [initdb, "-D", str(data), "-U", server.user, "--auth=trust", "-E", "UTF8", "--no-sync"], owner
            ),
            **run,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=on -c synchronous_commit=on"
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"], owner),
            **run,
        )
        started = True
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                with psycopg.connect(server.dsn("postgres"), connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"PostgreSQL not ready after {READY_SECONDS} s; see {log}") from None
                time.sleep(0.2)
        yield server
    except subprocess.CalledProcessError as error:
        pytest.fail(f"PostgreSQL could not start: {error.stderr or error.stdout}")
    finally:
        if started:
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop"], owner),
                capture_output=True,
                timeout=90,
            )
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Redis:
    """A running redis-server."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """redis-server on a free loopback port, nothing persisted."""
    import redis

    binary = debian_binary("redis-server", "/usr/bin/redis-server")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(folder), "--daemonize", "no"]
    with (folder / "redis.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"redis-server exited with {process.returncode}; see {folder / 'redis.log'}")
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server not ready after {READY_SECONDS} s")
            time.sleep(0.1)
        client.close()
        yield Redis(port=port, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
