"""Start-up time: `helpline serve` and `helpline demo`, from process start to the first 200.

    .venv/bin/python bench/startup.py                 # 5 runs of each, PostgreSQL
    .venv/bin/python bench/startup.py --runs 10
    .venv/bin/python bench/startup.py --database sqlite

`serve`: a migrated database (a fresh PostgreSQL database, created and dropped; or a SQLite
file) and a key file exist; the clock starts just before the process is started and stops at
the first 200 from `GET /readyz` (the instance can serve: database reachable), then the
process is stopped (SIGTERM, its process group) and the next run starts on a new port.
`demo`: from an empty data directory each run (key file, migration, demo platforms, partners
and login, then serving), to the first 200 from `/readyz`. Both poll every 10 ms. It also
times `python -c "import helpline.app"` (the imports alone), to show what is Python's part.
Prints each run, then min/median/max. It removes everything it made, also on Ctrl-C.
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# Python puts this directory first on the import path, and bench/queue.py is called like the
# standard library's `queue`, which asyncio imports: take this directory off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # for bench.cluster

import argparse
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.cluster import HOST, _pg_admin, free_port

POLL = 0.01
TIMEOUT = 120.0


def env_for(data_dir: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env.update(HELPLINE_DATA_DIR=str(data_dir), HELPLINE_LOG_LEVEL="WARNING")
    if database_url:
        env["HELPLINE_DATABASE_URL"] = database_url
    return env


def time_to_ready(command: list[str], env: dict[str, str], cwd: Path, port: int) -> float:
    """Seconds from starting `command` to its first 200 on /readyz; stops it afterwards."""
    log = open(cwd / "server.log", "ab")  # noqa: SIM115  # closed below
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with httpx.Client(timeout=1) as http:
            while time.perf_counter() - started < TIMEOUT:
                if process.poll() is not None:
                    tail = (cwd / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{command[3]} exited:\n{tail}")
                try:
                    if http.get(f"http://{HOST}:{port}/readyz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(POLL)
        raise TimeoutError(f"not ready within {TIMEOUT:.0f} s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        log.close()


def helpline(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "helpline.cli", *arguments]


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} min {min(values):6.2f} s   median {statistics.median(values):6.2f} s   "
        f"max {max(values):6.2f} s   ({len(values)} runs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start-up time of helpline serve and demo.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/")
    args = parser.parse_args(argv)

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    tmp = Path(tempfile.mkdtemp(prefix="helpline-startup-"))
    databases: list[str] = []
    results: dict[str, list[float]] = {"import helpline.app": [], "serve": [], "demo": []}
    try:
        print(
            f"machine: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f} (1 min)")

        def fresh_database() -> str:
            if args.database == "sqlite":
                return ""  # the data directory's helpline.db
            from sqlalchemy.engine import make_url

            name = f"helpline_startup_{secrets.token_hex(4)}"
            _pg_admin(args.postgres, f'CREATE DATABASE "{name}"')
            databases.append(name)
            url = make_url(args.postgres).set(drivername="postgresql+asyncpg", database=name)
            return url.render_as_string(hide_password=False)

        # serve: one prepared database and key file, started again and again
        served = tmp / "serve"
        served.mkdir()
        env = env_for(served / "data", fresh_database())
        for step in (["keys", "init"], ["migrate"]):
            subprocess.run(helpline(*step), env=env, cwd=served, check=True, capture_output=True)
        for run in range(args.runs):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", "import helpline.app"], env=env, cwd=served, check=True
            )
            results["import helpline.app"].append(time.perf_counter() - started)
            port = free_port()
            command = helpline("serve", "--host", HOST, "--port", str(port))
            results["serve"].append(time_to_ready(command, env, served, port))
            print(
                f"run {run + 1}: import {results['import helpline.app'][-1]:.2f} s, "
                f"serve {results['serve'][-1]:.2f} s",
                flush=True,
            )
        # demo: a clean directory (and a fresh database) every time
        for run in range(args.runs):
            folder = tmp / f"demo{run}"
            folder.mkdir()
            port = free_port()
            command = helpline("demo", "--host", HOST, "--port", str(port))
            results["demo"].append(
                time_to_ready(command, env_for(folder / "data", fresh_database()), folder, port)
            )
            print(f"run {run + 1}: demo from a clean directory {results['demo'][-1]:.2f} s")
        print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
        print()
        for name, values in results.items():
            print(summary(name, values))
        print()
        print("| what | min | median | max | runs |")
        print("|---|---|---|---|---|")
        for name, values in results.items():
            print(
                f"| {name} | {min(values):.2f} s | {statistics.median(values):.2f} s "
                f"| {max(values):.2f} s | {len(values)} |"
            )
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name in databases:
            try:
                _pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"could not drop database {name}: {exc!r}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
