"""A throwaway PostgreSQL cluster in a temporary folder, listening on a Unix socket only.

Used by the test fixtures and the benchmarks: ``start()`` runs initdb and pg_ctl from the newest
PostgreSQL >= 15 installed (``pg_config --bindir`` or /usr/lib/postgresql/*/bin). initdb refuses
to run as root, so as root the cluster runs as the ``postgres`` system user (the Debian package
creates it); the folder lives directly under the system temp dir so that user can reach it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

MIN_MAJOR = 15


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def _bin_dir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        candidates.insert(0, found)
    for folder in candidates:
        initdb = Path(folder) / "initdb"
        if initdb.is_file():
            version = subprocess.run([initdb, "--version"], capture_output=True, text=True).stdout
            major = int(version.split()[-1].split(".")[0])
            if major >= MIN_MAJOR:
                return Path(folder)
    raise ClusterUnavailable(
        f"no PostgreSQL >= {MIN_MAJOR} server binaries (initdb) found; "
        "install them with `apt-get install -y postgresql`"
    )


def _run_as() -> str | None:
    """The system user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as error:
        raise ClusterUnavailable("running as root and no 'postgres' user exists for initdb") from error
    return "postgres"


@dataclass
class Cluster:
    folder: Path
    bin_dir: Path
    user: str | None

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) of ``database`` over the cluster's Unix socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("/")[-1].split("?")[0]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(statement)

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / program), *args], user=self.user,
                              capture_output=True, text=True, check=check, timeout=120)


def start() -> Cluster:
    """Initialise and start a cluster; raises ClusterUnavailable with the reason when it cannot."""
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        raise ClusterUnavailable("the psycopg driver is not installed (requirements.txt)") from error
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="faceagree-pg-")), _bin_dir(), _run_as())
    cluster.socket_dir.mkdir()
    if cluster.user:
        for path in (cluster.folder, cluster.socket_dir):
            shutil.chown(path, cluster.user)
    data = str(cluster.folder / "data")
    try:
        cluster._pg("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        # Tests never crash the server itself, so fsync off is safe and makes CREATE DATABASE fast.
        options = (f"-k {cluster.socket_dir} -c listen_addresses='' -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        cluster._pg("pg_ctl", "-D", data, "-o", options, "-l", str(cluster.folder / "log"), "-w", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        cluster.stop()
        raise ClusterUnavailable(f"could not start PostgreSQL: {detail.strip()[-300:]}") from error
    return cluster
