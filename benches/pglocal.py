"""Local servers for the benchmarks: a throwaway PostgreSQL 15 cluster (Debian's package) and
a release lakecube, each on a free loopback port, stopped when the run ends.

Used by benches/wire/run.py; any bench that compares lakecube with PostgreSQL side by side
starts them the same way."""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg

ROOT = pathlib.Path(__file__).resolve().parent.parent
PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, user: str, dbname: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user=user, dbname=dbname, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class Postgres:
    """initdb in a temporary folder (owned by the `postgres` user when run as root, since
    PostgreSQL refuses to run as root), trust authentication on loopback, fsync off (the data is
    a throwaway copy), started with pg_ctl."""

    def __init__(self):
        self.port = free_port()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="lakecube-bench-pg-"))
        self.data = self.dir / "data"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
        self._run([PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "log", "-w", "start", "-o",
                   f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=512MB "
                   "-c work_mem=64MB -c max_parallel_workers_per_gather=2"])
        wait_ready(self.port, "postgres", "postgres")

    def _run(self, args):
        args = [str(a) for a in args]
        if self.as_postgres:
            args = ["runuser", "-u", "postgres", "--"] + args
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)

    def connect(self, **kw):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", **kw)

    def stop(self):
        try:
            self._run([PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Lakecube:
    """target/release/lakecube serving a lake from the repository root (so cube-defs/ is found)."""

    def __init__(self, lake: pathlib.Path):
        self.port = free_port()
        self.log = open(tempfile.mktemp(prefix="lakecube-bench-", suffix=".log"), "w")
        self.proc = subprocess.Popen(
            [str(ROOT / "target/release/lakecube"), "serve", "--lake", str(lake), "--listen", f"127.0.0.1:{self.port}"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(self.port, "lakecube", "lakecube")

    def connect(self, **kw):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="lakecube", dbname="lakecube", **kw)

    def peak_rss_kib(self) -> int:
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
