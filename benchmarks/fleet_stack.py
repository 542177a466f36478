"""What the fleet benchmark starts and measures: PostgreSQL, a Prefect server, workers, CPU time.

Everything runs on 127.0.0.1 in temporary directories and is stopped by the caller (each
class is a context manager). CPU seconds are read from ``/proc`` (Linux only): a process's own
user + system time plus the time of the children it has reaped, summed over its live process
tree, so a worker's flow-run processes that have exited and a PostgreSQL backend that served a
closed connection still count.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from enrich.bench.processes import free_port, prefect_server_command, wait_until_healthy
from enrich.sim.process import stop_process

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT_S = 180.0
POSTGRES_MISSING = (
    "PostgreSQL not found: install it (Debian/Ubuntu: `apt-get install postgresql`, which puts "
    "initdb and pg_ctl under /usr/lib/postgresql/<version>/bin) or put its bin folder on PATH"
)


class Postgres:
    """A throwaway PostgreSQL cluster: ``initdb`` into a temporary folder, ``pg_ctl start`` on a
    free port (socket in the same folder), one database ``prefect``. As root, every command runs
    as the ``postgres`` user (``nobody`` if there is none): initdb and postgres refuse root."""

    def __init__(self) -> None:
        self.bin = self.find_bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            names = {p.pw_name for p in pwd.getpwall()}
            self._user = "postgres" if "postgres" in names else "nobody"
            user = pwd.getpwnam(self._user)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    @staticmethod
    def find_bin() -> Path:
        """The folder of ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned folder."""
        found = shutil.which("initdb")
        if found and shutil.which("pg_ctl"):
            return Path(os.path.realpath(found)).parent
        for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
            if (Path(folder) / "initdb").exists():
                return Path(folder)
        raise SystemExit(POSTGRES_MISSING)

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    def __enter__(self) -> Self:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "prefect")
        return self

    @property
    def pid(self) -> int:
        """The postmaster's pid (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrefectStack:
    """``prefect server start`` on a free port with the given database, its work pool and the
    project's deployments (``prefect deploy --all`` from the repository), and process workers.

    ``database`` is a SQLAlchemy URL; None means SQLite in the server's temporary home.
    """

    POOL = "enrich-process"  # the pool prefect.yaml names

    def __init__(self, database: str | None, extra_env: Mapping[str, str]) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="fleet-prefect-"))
        self.api = f"http://127.0.0.1:{free_port()}/api"
        self.database = database or f"sqlite+aiosqlite:///{self.home}/prefect.db"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api,
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            # Workers look for runs every second, so pick-up is not a 10 s poll.
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
            **extra_env,
        }
        self.server_log = self.home / "server.log"
        self._server: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def _start(self, command: Sequence[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 -- closed in __exit__
        self._logs.append(out)
        return subprocess.Popen(
            list(command), env=self.env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )

    def __enter__(self) -> Self:
        port = self.api.rsplit(":", 1)[1].removesuffix("/api")
        self._server = self._start(prefect_server_command(port), self.server_log, self.home)
        wait_until_healthy(self._server, self.api, SERVER_START_TIMEOUT_S, self.server_log)
        return self

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def deploy(self) -> None:
        """The work pool and every deployment of prefect.yaml, pointed at this pool."""
        self.cli("work-pool", "create", self.POOL, "--type", "process", "--overwrite")
        self.cli("deploy", "--all", "--no-prompt")

    def start_worker(self, name: str, limit: int | None = None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.POOL]
        command += ["--type", "process", "--install-policy", "never", "--name", name]
        if limit is not None:
            command += ["--limit", str(limit)]
        folder = self.home / name
        folder.mkdir(exist_ok=True)
        proc = self._start(command, folder / "worker.log", folder)
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop_process(proc, 15.0)
        self.workers = []

    @property
    def server_pid(self) -> int:
        assert self._server is not None
        return self._server.pid

    def log_count(self, *needles: str) -> int:
        """Lines of the server's log naming any of ``needles``."""
        text = self.server_log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if any(n in line for n in needles))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_workers()
        if self._server is not None:
            stop_process(self._server, 15.0)
        for out in self._logs:
            out.close()
        shutil.rmtree(self.home, ignore_errors=True)
