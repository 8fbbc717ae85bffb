"""Chat benchmark: idle victim connections per process, and victim→staff delivery latency.

    .venv/bin/python bench/chat.py                      # PostgreSQL, one instance
    .venv/bin/python bench/chat.py --instances 2        # two instances through Redis
    .venv/bin/python bench/chat.py --connections 10000  # the full connection goal
    .venv/bin/python bench/chat.py --database sqlite

It starts its own `helpline serve` subprocesses on 127.0.0.1 (fresh PostgreSQL database, temp
data directory, random master key), measures, prints a summary and a markdown table row, and
removes everything it made (processes, temp directory, database), also on Ctrl-C or an error.
It only talks to 127.0.0.1. It is not part of the test suite. Figures: docs/benchmarks.md.

1. Connections: N victim websockets (`hello` with a token), held idle, on one server process;
   the server's RSS (VmRSS) before and after gives the memory per connection. The N cases are
   made in this process with the app's own `helpline.cases.service.start_chat` (POST
   /api/chat/start is rate-limited to 120/minute and costs an Argon2id hash each, ~0.25 s here),
   by default with a cheap Argon2 setting in this process only, since those passphrases are
   never used (`--real-argon2` keeps the real cost).
2. Latency: M victim/staff pairs (victims via POST /api/chat/start, staff logged in with
   password + TOTP, cases claimed), victims send at a fixed aggregate rate; the time from a
   victim's send to the staff connection receiving the `message` frame, one clock
   (perf_counter) in this one process. Every message is encrypted and persisted by the app.
   Lost, doubled and out-of-order deliveries are counted (they must be 0).
3. `--instances 2`: two server processes sharing the database and Redis; victims on the first,
   staff on the second (the connection phase uses the first).
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# Python puts this directory first on the import path, and bench/queue.py is called like the
# standard library's `queue`, which asyncio imports: take this directory off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import math
import platform
import pstats
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pyotp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

T = TypeVar("T")
HOST = "127.0.0.1"
PASSWORD = "a long benchmark password"
PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def open_database(url: str) -> Any:
    """The app's own Database object, with every table's model loaded."""
    from helpline.core.db import Database
    from helpline.models import import_all_models

    import_all_models()
    return Database(url)


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- processes and resources


def raise_nofile() -> tuple[int, int]:
    """Soft file-descriptor limit up to the hard one (10k sockets need 10k descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _child_setup() -> None:
    """In the server subprocess before exec: the same descriptor limit, and die with us."""
    raise_nofile()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def proc_status(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def proc_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise KeyError("Max open files")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def processes_cpu_seconds(names: tuple[str, ...]) -> float:
    """CPU seconds used so far by every process whose command is one of `names` (PostgreSQL's
    backends, Redis): what the database side costs, next to the servers' own CPU."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if (entry / "comm").read_text().strip() in names:
                total += proc_cpu_seconds(int(entry.name))
    return total


SERVICE_PROCESSES = ("postgres", "redis-server")


def machine_cpu() -> tuple[int, int, int]:
    """(busy, stolen, total) jiffies over all cores, from /proc/stat. On a VM, "steal" is
    time the hypervisor gave to someone else while this machine wanted to run."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle, steal = values[3] + values[4], values[7]
    return sum(values) - idle - steal, steal, sum(values)


@dataclass
class Server:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    profile: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def profile_path(self) -> Path:
        return self.log_path.with_suffix(".prof")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable]
                + (["-m", "cProfile", "-o", str(self.profile_path)] if self.profile else [])
                + ["-m", "helpline.cli", "serve", "--host", HOST]
                + ["--port", str(self.port)],
                env=self.env,
                cwd=self.log_path.parent,  # not the source tree: `-m` puts the cwd on sys.path
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup,
                start_new_session=True,  # Ctrl-C reaches us; we stop the server ourselves
            )

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    answer = await http.get("/readyz")
                    if answer.status_code == 200 and answer.json()["status"] == "ok":
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.name} died:\n{self.log_tail()}")

    def rss_kib(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # uvicorn re-raises the signal after its graceful shutdown; SIGINT then surfaces as
        # KeyboardInterrupt, which lets cProfile write its file on the way out
        self.process.send_signal(signal.SIGINT if self.profile else signal.SIGTERM)
        try:
            self.process.wait(60 if self.profile else 20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def pg_dsn(url: str, database: str) -> str:
    """A plain postgresql:// DSN for asyncpg from a SQLAlchemy URL, naming `database`."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(pg_dsn(url, "postgres"), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@dataclass
class Workspace:
    """Everything the run creates, undone by `cleanup()` whatever happened."""

    args: argparse.Namespace
    tmp: Path | None = None
    servers: list[Server] = field(default_factory=list)
    pg_database: str | None = None
    database_url: str = ""

    async def prepare(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="helpline-bench-"))
        if self.args.database == "postgresql":
            name = f"helpline_bench_{secrets.token_hex(4)}"
            await _pg_admin(self.args.postgres, f'CREATE DATABASE "{name}"')
            self.pg_database = name
            from sqlalchemy.engine import make_url

            base = make_url(self.args.postgres).set(database=name)
            self.database_url = base.render_as_string(hide_password=False)
        else:
            self.database_url = f"sqlite+aiosqlite:///{self.tmp / 'helpline.db'}"

    def env(self, port: int) -> dict[str, str]:
        assert self.tmp is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
        env.update(
            HELPLINE_DATA_DIR=str(self.tmp / "data"),
            HELPLINE_MASTER_KEY=self.master_key,
            HELPLINE_DATABASE_URL=self.database_url,
            HELPLINE_BASE_URL=f"http://{HOST}:{port}",
            HELPLINE_OPENING_HOURS="mo-su 00:00-24:00",
            HELPLINE_LOG_LEVEL="WARNING",
        )
        if self.args.instances == 2:
            env["HELPLINE_REDIS_URL"] = self.args.redis
        return env

    @property
    def master_key(self) -> str:
        if not hasattr(self, "_master_key"):
            self._master_key = base64.b64encode(os.urandom(32)).decode()
        return self._master_key

    def migrate(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "helpline.cli", "migrate"],
            env=self.env(8000),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"helpline migrate failed:\n{done.stdout}{done.stderr}")

    async def start_servers(self) -> list[Server]:
        assert self.tmp is not None
        for index in range(self.args.instances):
            port = free_port()
            name = f"server{'AB'[index]}"
            server = Server(
                name, port, self.env(port), self.tmp / f"{name}.log", profile=self.args.profile
            )
            self.servers.append(server)
            server.start()
        for server in self.servers:
            await server.wait_ready()
        return self.servers

    def cleanup(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        if self.args.profile:
            for server in self.servers:
                say(f"\n--- {server.name} profile (cProfile, by own time):")
                try:
                    stats = pstats.Stats(str(server.profile_path))
                    stats.sort_stats("tottime").print_stats(15)
                    stats.sort_stats("cumulative").print_stats("helpline/", 25)
                except Exception as exc:
                    say(f"no profile: {exc!r}")
        if self.pg_database is not None:
            try:
                asyncio.run(
                    _pg_admin(
                        self.args.postgres,
                        f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)',
                    )
                )
                self.pg_database = None
            except Exception as exc:  # say so: someone must drop it by hand
                say(f"could not drop database {self.pg_database}: {exc!r}")
        if self.tmp is not None:
            if self.args.keep_logs:
                say(f"logs kept in {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


async def bounded(
    limit: int, jobs: Iterable[Callable[[], Awaitable[T]]]
) -> list[T | BaseException]:
    """Run the jobs with at most `limit` at a time; results (or exceptions) in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# ---------------------------------------------------------------- clients


def ws_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "compression": "deflate" if args.compression == "on" else None,
        "ping_interval": None,  # idle means idle; the server still pings (uvicorn's default)
        "open_timeout": 60,
        "close_timeout": 5,
        "max_queue": 64,
    }


async def open_chat(
    url: str, hello: dict[str, Any], args: argparse.Namespace, headers: dict[str, str] | None = None
) -> ClientConnection:
    socket_ = await connect(f"{url}/ws/chat", additional_headers=headers, **ws_options(args))
    try:
        await socket_.send(json.dumps({"type": "hello", **hello}))
        welcome = json.loads(await asyncio.wait_for(socket_.recv(), 60))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"hello refused: {welcome}")
    except BaseException:
        await socket_.close()
        raise
    return socket_


async def start_victim(http: httpx.AsyncClient) -> dict[str, str]:
    """POST /api/chat/start, waiting out the global 120/minute limit when it is hit."""
    while True:
        answer = await http.post("/api/chat/start", json={"language": "nl"})
        if answer.status_code == 429:
            wait = float(answer.headers.get("retry-after", "5"))
            say(f"  /api/chat/start rate-limited; waiting {wait:.0f} s")
            await asyncio.sleep(wait)
            continue
        answer.raise_for_status()
        body: dict[str, str] = answer.json()
        return body


@dataclass
class Staff:
    username: str
    http: httpx.AsyncClient
    base_url: str
    csrf: str = ""

    async def log_in(self) -> None:
        origin = {"Origin": self.base_url}
        answer = await self.http.post(
            "/api/staff/login",
            json={"username": self.username, "password": PASSWORD},
            headers=origin,
        )
        answer.raise_for_status()
        if answer.json()["stage"] != "enrol":
            raise RuntimeError(f"unexpected login stage: {answer.json()}")
        secret = (await self.http.get("/api/staff/totp/enrolment")).json()["secret"]
        csrf = (await self.http.get("/api/staff/me")).json()["csrf_token"]
        enrolled = await self.http.post(
            "/api/staff/totp/enrol",
            json={"code": pyotp.TOTP(secret).now()},
            headers={**origin, "X-CSRF-Token": csrf},
        )
        enrolled.raise_for_status()
        self.csrf = (await self.http.get("/api/staff/me")).json()["csrf_token"]

    async def claim(self, case_id: str) -> None:
        answer = await self.http.post(
            f"/api/staff/cases/{case_id}/claim",
            headers={"X-CSRF-Token": self.csrf, "Origin": self.base_url},
        )
        answer.raise_for_status()

    def socket_headers(self) -> dict[str, str]:
        cookies = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        return {"Cookie": cookies, "Origin": self.base_url}


async def create_staff_accounts(database_url: str, count: int) -> list[str]:
    from helpline.core.clock import SystemClock
    from helpline.staff.accounts import create_staff
    from helpline.staff.models import Role

    db = open_database(database_url)
    names = [f"bench{i}" for i in range(count)]
    try:
        for name in names:
            async with db.transaction() as session:
                await create_staff(
                    session, SystemClock(), username=name, password=PASSWORD, role=Role.agent
                )
    finally:
        await db.dispose()
    return names


# ---------------------------------------------------------------- 1. connections


async def create_cases(args: argparse.Namespace, database_url: str, count: int) -> list[str]:
    """`count` chat cases through the app's own start_chat; their victims' tokens."""
    from argon2 import PasswordHasher

    from helpline.cases import receipts, service
    from helpline.core.clock import SystemClock

    if not args.real_argon2:  # this process only: the server keeps the real parameters
        receipts.passphrase_hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    db = open_database(database_url)
    clock = SystemClock()
    tokens: list[str] = []
    batch = 1 if args.real_argon2 else 100  # the audit head row serialises transactions
    workers = max(1, os.cpu_count() or 1) if args.real_argon2 else 1
    started = time.perf_counter()
    shown = 0.0

    async def worker(quota: int) -> None:
        nonlocal shown
        made = 0
        while made < quota:
            size = min(batch, quota - made)
            async with db.transaction() as session:
                fresh = [
                    (await service.start_chat(session, clock, language="nl", topic=None)).token
                    for _ in range(size)
                ]
            tokens.extend(fresh)
            made += size
            now = time.perf_counter()
            if now - shown >= 2 or len(tokens) == count:
                shown = now
                rate = len(tokens) / (now - started)
                say(f"  cases {len(tokens)}/{count} ({rate:.0f}/s)")

    try:
        quotas = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
        await asyncio.gather(*(worker(q) for q in quotas))
    finally:
        await db.dispose()
    elapsed = time.perf_counter() - started
    say(
        f"  {count} cases in {elapsed:.1f} s ({count / elapsed:.0f}/s, real Argon2: "
        f"{'yes' if args.real_argon2 else 'no'})"
    )
    return tokens


@dataclass
class ConnectionResult:
    connections: int
    failed: int
    rss_before_kib: int
    rss_after_kib: int
    rss_held_kib: int
    still_open: int
    connect_seconds: float
    server_nofile: int

    @property
    def kib_per_connection(self) -> float:
        opened = self.connections - self.failed
        return (self.rss_held_kib - self.rss_before_kib) / opened if opened else math.nan


async def bench_connections(
    args: argparse.Namespace, work: Workspace, server: Server
) -> ConnectionResult:
    n = args.connections
    say(f"\n== connections: {n} idle victim websockets on {server.name} (pid {server.pid})")
    nofile = proc_nofile(server.pid)
    say(
        f"  descriptor limit: server {nofile}, this process "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )
    if nofile < n + 200:
        raise RuntimeError(f"the server may open only {nofile} files; {n} connections need more")
    warmup = min(50, n)
    tokens = await create_cases(args, work.database_url, n + warmup)
    warm_tokens, tokens = tokens[:warmup], tokens[warmup:]

    # warm up: the first connections pay for imports, pool connections, caches
    warm = await bounded(
        20,
        [lambda t=t: open_chat(server.ws_url, {"token": t, "after": 0}, args) for t in warm_tokens],
    )
    await asyncio.gather(*(s.close() for s in warm if isinstance(s, ClientConnection)))
    await asyncio.sleep(2)
    server.check_alive()
    before = server.rss_kib()
    say(f"  server RSS before: {before / 1024:.1f} MiB")

    sockets: list[ClientConnection] = []
    failures: list[BaseException] = []
    started = time.perf_counter()
    last_shown = started

    async def one(token: str) -> None:
        nonlocal last_shown
        try:
            sockets.append(await open_chat(server.ws_url, {"token": token, "after": 0}, args))
        except Exception as exc:
            failures.append(exc)
        now = time.perf_counter()
        done = len(sockets) + len(failures)
        if now - last_shown >= 1 or done == n:
            last_shown = now
            say(
                f"  connected {len(sockets)}/{n}, failed {len(failures)}, "
                f"{done / (now - started):.0f}/s, server RSS {server.rss_kib() / 1024:.1f} MiB"
            )

    try:
        await bounded(args.connect_concurrency, [lambda t=t: one(t) for t in tokens])
        connect_seconds = time.perf_counter() - started
        if failures:
            say(f"  {len(failures)} failed, e.g. {failures[0]!r}")
        await asyncio.sleep(2)
        after = server.rss_kib()
        say(f"  holding {len(sockets)} idle connections for {args.hold:.0f} s")
        await asyncio.sleep(args.hold)
        server.check_alive()
        held = server.rss_kib()
        still_open = sum(1 for s in sockets if s.state is State.OPEN)
        say(
            f"  server RSS after connecting {after / 1024:.1f} MiB, after holding "
            f"{held / 1024:.1f} MiB; {still_open} still open"
        )
    finally:
        say(f"  closing {len(sockets)} connections")
        await bounded(500, [lambda s=s: s.close() for s in sockets])
    return ConnectionResult(
        connections=n,
        failed=len(failures),
        rss_before_kib=before,
        rss_after_kib=after,
        rss_held_kib=held,
        still_open=still_open,
        connect_seconds=connect_seconds,
        server_nofile=nofile,
    )


# ---------------------------------------------------------------- 2. latency


@dataclass
class Pair:
    index: int
    token: str
    reference: str
    staff: Staff | None = None
    case_id: str = ""
    victim_socket: ClientConnection | None = None
    staff_socket: ClientConnection | None = None
    staff_seq: int = 0
    staff_closed: bool = False


@dataclass
class Tally:
    sent: dict[str, float] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    received: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    first_send: float = 0.0
    last_send: float = 0.0
    last_receive: float = 0.0
    late: list[float] = field(default_factory=list)  # how far behind schedule each send was


@dataclass
class LatencyResult:
    pairs: int
    target_rate: float
    seconds: float
    sent: int
    delivered: int
    lost: int  # acknowledged (stored) but never delivered to staff
    pending: int  # neither acknowledged nor delivered when we stopped waiting
    doubled: int
    unacked: int
    out_of_order: int
    close_codes: dict[str, int]
    cut_off: int  # acked, not delivered, and the server had closed that case's staff socket
    latencies_ms: list[float]
    achieved_rate: float
    delivered_rate: float
    drain_seconds: float
    send_late_p99_ms: float
    server_cpu: dict[str, float]
    server_ms_per_message: float  # server CPU from the first send until drained, per delivery
    services_cpu: float  # PostgreSQL + Redis processes during the load, % of one core
    client_cpu: float
    machine_cpu: float
    machine_steal: float

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


class Readers:
    """One task per socket that reads every frame; the staff side records the latencies."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.tasks: list[asyncio.Task[None]] = []
        self.out_of_order = 0
        self.close_codes: dict[str, int] = {}

    def watch_staff(self, pair: Pair) -> None:
        self.tasks.append(asyncio.create_task(self._staff(pair)))

    def watch_victim(self, pair: Pair) -> None:
        self.tasks.append(asyncio.create_task(self._victim(pair)))

    async def _staff(self, pair: Pair) -> None:
        assert pair.staff_socket is not None
        try:
            async for text in pair.staff_socket:
                now = time.perf_counter()
                frame = json.loads(text)
                if frame.get("type") != "message":
                    continue
                if frame["seq"] <= pair.staff_seq:
                    self.out_of_order += 1
                pair.staff_seq = frame["seq"]
                tally = self.tally
                sent = tally.sent.get(frame.get("client_id"))
                if sent is None:
                    continue
                count = tally.received.get(frame["client_id"], 0)
                tally.received[frame["client_id"]] = count + 1
                if count == 0:
                    tally.latencies.append(now - sent)
                    tally.last_receive = now
        except ConnectionClosed as exc:
            pair.staff_closed = True
            self._closed(exc)

    def _closed(self, exc: ConnectionClosed) -> None:
        code = exc.rcvd.code if exc.rcvd is not None else None
        reason = exc.rcvd.reason if exc.rcvd is not None else "no close frame"
        key = f"{code} {reason}".strip()
        self.close_codes[key] = self.close_codes.get(key, 0) + 1

    async def _victim(self, pair: Pair) -> None:
        assert pair.victim_socket is not None
        try:
            async for text in pair.victim_socket:
                frame = json.loads(text)
                if frame.get("type") == "ack":
                    self.tally.acked.add(frame["client_id"])
        except ConnectionClosed as exc:
            self._closed(exc)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def send_at_rate(
    pairs: list[Pair], tally: Tally, rate: float, seconds: float, prefix: str
) -> None:
    """Message i goes from victim i % len(pairs) at start + i / rate."""
    total = int(rate * seconds)
    start = time.perf_counter()
    tally.first_send = start
    i = 0
    while i < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        while i < due:
            pair = pairs[i % len(pairs)]
            client_id = f"{prefix}{i}"
            scheduled = start + i / rate
            sent = time.perf_counter()
            tally.sent[client_id] = sent
            tally.late.append(sent - scheduled)
            assert pair.victim_socket is not None
            await pair.victim_socket.send(
                json.dumps({"type": "send", "client_id": client_id, "text": f"benchmark {i}"})
            )
            i += 1
        tally.last_send = time.perf_counter()
        wake = start + i / rate - time.perf_counter()
        await asyncio.sleep(max(0.0, wake))


async def wait_delivered(tally: Tally, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if len(tally.received) >= len(tally.sent) and len(tally.acked) >= len(tally.sent):
            return
        await asyncio.sleep(0.05)


async def bench_latency(
    args: argparse.Namespace, work: Workspace, victims_on: Server, staff_on: Server
) -> LatencyResult:
    m = args.pairs
    say(
        f"\n== latency: {m} pairs, {args.rate:.0f} messages/s for {args.seconds:.0f} s; "
        f"victims on {victims_on.name}, staff on {staff_on.name}"
    )
    names = await create_staff_accounts(work.database_url, args.staff)
    staff = [
        Staff(name, httpx.AsyncClient(base_url=staff_on.url, timeout=60), staff_on.url)
        for name in names
    ]
    victim_http = httpx.AsyncClient(base_url=victims_on.url, timeout=120)
    readers = Readers()
    pairs: list[Pair] = []
    try:
        for member in staff:
            await member.log_in()
        say(f"  {len(staff)} staff logged in (password + TOTP) on {staff_on.name}")
        started = time.perf_counter()
        receipts = await bounded(4, [lambda: start_victim(victim_http) for _ in range(m)])
        for r in receipts:
            if isinstance(r, BaseException):
                raise r
        say(
            f"  {m} POST /api/chat/start in {time.perf_counter() - started:.1f} s "
            f"(Argon2id on the server)"
        )
        pairs = [
            Pair(i, r["token"], r["reference"], staff=staff[i % len(staff)])
            for i, r in enumerate(receipts)
            if isinstance(r, dict)
        ]
        for pair in pairs:
            pair.victim_socket = await open_chat(
                victims_on.ws_url, {"token": pair.token, "after": 0}, args
            )
            readers.watch_victim(pair)
        listed = (await staff[0].http.get("/api/staff/cases")).json()["cases"]
        ids = {c["reference"]: c["id"] for c in listed}
        for pair in pairs:
            assert pair.staff is not None
            pair.case_id = ids[pair.reference]
            await pair.staff.claim(pair.case_id)
            pair.staff_socket = await open_chat(
                staff_on.ws_url,
                {"case": pair.case_id, "after": 0},
                args,
                headers=pair.staff.socket_headers(),
            )
            readers.watch_staff(pair)
        say(f"  {m} cases claimed, {2 * m} websockets open")
        await asyncio.sleep(1)

        # warm-up: one message per pair, not counted
        await send_at_rate(
            pairs, readers.tally, min(args.rate, 200), len(pairs) / min(args.rate, 200), "warm"
        )
        await wait_delivered(readers.tally, 30)
        readers.tally = Tally()
        readers.out_of_order = 0
        await asyncio.sleep(1)

        for server in work.servers:
            server.check_alive()
        cpu_before = {s.name: s.cpu_seconds() for s in work.servers}
        services_before = processes_cpu_seconds(SERVICE_PROCESSES)
        client_before = time.process_time()
        machine_before = machine_cpu()
        wall_before = time.perf_counter()
        tally = readers.tally
        await send_at_rate(pairs, tally, args.rate, args.seconds, "m")
        wall = time.perf_counter() - wall_before
        server_cpu = {
            s.name: (s.cpu_seconds() - cpu_before[s.name]) / wall * 100 for s in work.servers
        }
        client_cpu = (time.process_time() - client_before) / wall * 100
        services_cpu = (processes_cpu_seconds(SERVICE_PROCESSES) - services_before) / wall * 100
        busy, steal, total = machine_cpu()
        span_jiffies = max(1, total - machine_before[2])
        machine = (busy - machine_before[0]) / span_jiffies * 100
        stolen = (steal - machine_before[1]) / span_jiffies * 100
        say(
            f"  sent {len(tally.sent)} in {wall:.1f} s; waiting up to {args.drain:.0f} s "
            f"for the rest"
        )
        await wait_delivered(tally, args.drain)
        drain = max(0.0, tally.last_receive - tally.last_send)
        server_seconds = sum(s.cpu_seconds() - cpu_before[s.name] for s in work.servers)
    finally:
        await readers.stop()
        sockets = [p.victim_socket for p in pairs] + [p.staff_socket for p in pairs]
        await asyncio.gather(*(s.close() for s in sockets if s is not None), return_exceptions=True)
        await victim_http.aclose()
        for member in staff:
            await member.http.aclose()

    delivered_ids = set(tally.received) & set(tally.sent)
    delivered = len(delivered_ids)
    undelivered = (tally.acked & set(tally.sent)) - delivered_ids
    # message m<i> came from pair i % m; a closed staff socket cannot receive (a real client
    # would reconnect and fetch the rest with `after`), which is not the same as a lost message
    cut_off = {c for c in undelivered if pairs[int(c[1:]) % len(pairs)].staff_closed}
    span = max(1e-9, tally.last_send - tally.first_send)
    late = sorted(tally.late)
    return LatencyResult(
        pairs=m,
        target_rate=args.rate,
        seconds=args.seconds,
        sent=len(tally.sent),
        delivered=delivered,
        lost=len(undelivered - cut_off),
        pending=len(set(tally.sent) - tally.acked - delivered_ids),
        doubled=sum(c - 1 for c in tally.received.values() if c > 1),
        unacked=len(set(tally.sent) - tally.acked),
        out_of_order=readers.out_of_order,
        close_codes=readers.close_codes,
        cut_off=len(cut_off),
        latencies_ms=sorted(x * 1000 for x in tally.latencies),
        achieved_rate=len(tally.sent) / span,
        delivered_rate=delivered / max(1e-9, tally.last_receive - tally.first_send),
        drain_seconds=drain,
        send_late_p99_ms=percentile(late, 0.99) * 1000,
        server_cpu=server_cpu,
        server_ms_per_message=server_seconds * 1000 / max(1, len(tally.received)),
        services_cpu=services_cpu,
        client_cpu=client_cpu,
        machine_cpu=machine,
        machine_steal=stolen,
    )


# ---------------------------------------------------------------- report


def versions(args: argparse.Namespace) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    parts = [f"Python {platform.python_version()}", f"{os.cpu_count()} cores"]
    parts.append(f"load average {load}")
    with contextlib.suppress(Exception):
        total = proc_meminfo_kib("MemTotal")
        parts.append(f"{total / 1024 / 1024:.1f} GiB RAM")
    return ", ".join(parts)


def proc_meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def report(
    args: argparse.Namespace,
    connections: ConnectionResult | None,
    latency: LatencyResult | None,
) -> None:
    setup = f"{args.database}, {args.instances} instance{'s' if args.instances > 1 else ''}"
    if args.instances == 2:
        setup += " + Redis"
    say("\n" + "=" * 72)
    say(f"SUMMARY  {setup}; compression {args.compression}; {versions(args)}")
    if connections is not None:
        c = connections
        say(
            f"connections  {c.connections - c.failed}/{c.connections} opened "
            f"({c.failed} failed) in {c.connect_seconds:.1f} s "
            f"({(c.connections - c.failed) / c.connect_seconds:.0f}/s), "
            f"{c.still_open} still open after {args.hold:.0f} s idle"
        )
        say(
            f"  server RSS {c.rss_before_kib / 1024:.1f} MiB before, "
            f"{c.rss_after_kib / 1024:.1f} MiB after connecting, "
            f"{c.rss_held_kib / 1024:.1f} MiB after holding"
        )
        if c.connections < 10_000:
            verdict = "not measured at this N"
        elif c.kib_per_connection < 40 and not c.failed and c.still_open == c.connections:
            verdict = "met"
        else:
            verdict = "not met"
        say(
            f"  memory per connection: {c.kib_per_connection:.1f} KiB "
            f"(goal: 10,000 at < 40 KiB each: {verdict})"
        )
    if latency is not None:
        r = latency
        say(
            f"latency  {r.pairs} pairs, target {r.target_rate:.0f}/s for {r.seconds:.0f} s: "
            f"sent {r.sent} at {r.achieved_rate:.0f}/s, delivered {r.delivered} "
            f"({r.delivered_rate:.0f}/s), drained {r.drain_seconds:.2f} s after the last send"
        )
        say(
            f"  victim send -> staff message frame: p50 {r.p(0.50):.1f} ms, "
            f"p95 {r.p(0.95):.1f} ms, p99 {r.p(0.99):.1f} ms, max {r.p(1.0):.1f} ms"
        )
        say(
            f"  lost (acked, never delivered) {r.lost}, doubled {r.doubled}, out of order "
            f"{r.out_of_order}, unacked {r.unacked}"
        )
        if r.close_codes or r.cut_off:
            codes = ", ".join(f"{n}× [{code}]" for code, n in sorted(r.close_codes.items()))
            say(
                f"  sockets closed by the server during the run: {codes}; {r.cut_off} acked "
                f"messages were for a staff socket already closed (a real client reconnects "
                f"and fetches them with `after`; not counted as lost)"
            )
        if r.pending:
            say(
                f"  NOTE: {r.pending} messages were still queued (not acked, not delivered) "
                f"{args.drain:.0f} s after the last send: the server could not keep up. The "
                f"percentiles cover delivered messages only, so the real tail is worse."
            )
        cpu = ", ".join(f"{name} {pct:.0f}%" for name, pct in r.server_cpu.items())
        ours = sum(r.server_cpu.values()) + r.client_cpu + r.services_cpu
        others = max(0.0, r.machine_cpu * (os.cpu_count() or 1) - ours)
        say(
            f"  CPU during the load (100% = one core): {cpu}, client {r.client_cpu:.0f}%, "
            f"PostgreSQL + Redis {r.services_cpu:.0f}%, everything else on the machine "
            f"{others:.0f}%; machine {r.machine_cpu:.0f}% of all cores busy + "
            f"{r.machine_steal:.0f}% stolen by the hypervisor; client send lag p99 "
            f"{r.send_late_p99_ms:.1f} ms"
        )
        say(
            f"  server CPU per delivered message (first send until drained): "
            f"{r.server_ms_per_message:.2f} ms"
        )
        goal = (
            r.p(0.99) < 20
            and r.lost == r.doubled == r.pending == r.out_of_order == 0
            and r.target_rate >= 1000
            and r.achieved_rate >= 0.98 * r.target_rate
        )
        say(f"  goal p99 < 20 ms at 1,000 msg/s: {'met' if goal else 'not met'}")
    say("=" * 72)
    say("\nmarkdown:")
    say(
        "| database | instances | compression | connections | KiB/conn | RSS before → after "
        "(MiB) | pairs | msg/s target → sent → delivered | p50 | p95 | p99 | max (ms) "
        "| lost/doubled/pending |"
    )
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    cells = [
        args.database,
        str(args.instances) + (" + Redis" if args.instances == 2 else ""),
        args.compression,
    ]
    if connections is not None:
        c = connections
        cells += [
            f"{c.connections - c.failed}/{c.connections}",
            f"{c.kib_per_connection:.1f}",
            f"{c.rss_before_kib / 1024:.0f} → {c.rss_held_kib / 1024:.0f}",
        ]
    else:
        cells += ["–", "–", "–"]
    if latency is not None:
        r = latency
        cells += [
            str(r.pairs),
            f"{r.target_rate:.0f} → {r.achieved_rate:.0f} → {r.delivered_rate:.0f}",
            f"{r.p(0.5):.1f}",
            f"{r.p(0.95):.1f}",
            f"{r.p(0.99):.1f}",
            f"{r.p(1.0):.1f}",
            f"{r.lost}/{r.doubled}/{r.pending}",
        ]
    else:
        cells += ["–"] * 7
    say("| " + " | ".join(cells) + " |")


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace, work: Workspace) -> tuple[Any, Any]:
    await work.prepare()
    say(
        f"database: {args.database}"
        + (f" ({work.pg_database}, dropped afterwards)" if work.pg_database else "")
    )
    await asyncio.to_thread(work.migrate)
    servers = await work.start_servers()
    for server in servers:
        say(
            f"{server.name}: {server.url} (pid {server.pid}, RSS {server.rss_kib() / 1024:.1f} MiB)"
        )
    connections = latency = None
    if args.phase in ("both", "connections"):
        connections = await bench_connections(args, work, servers[0])
        await asyncio.sleep(2)
    if args.phase in ("both", "latency"):
        latency = await bench_latency(args, work, servers[0], servers[-1])
    for server in servers:
        server.check_alive()
    return connections, latency


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chat benchmark: idle connections and delivery latency (127.0.0.1 only)."
    )
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--postgres",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/",
        help="PostgreSQL server on which a fresh database is created and dropped",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--instances", type=int, choices=[1, 2], default=1)
    parser.add_argument("--phase", choices=["both", "connections", "latency"], default="both")
    parser.add_argument("--connections", type=int, default=2000, help="idle victim sockets")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--hold", type=float, default=10, help="seconds to hold them idle")
    parser.add_argument(
        "--real-argon2",
        action="store_true",
        help="make the connection phase's cases with the real Argon2 cost (slow: ~0.25 s each)",
    )
    parser.add_argument(
        "--compression",
        choices=["on", "off"],
        default="on",
        help="offer permessage-deflate, as browsers do (default on)",
    )
    parser.add_argument("--pairs", type=int, default=50, help="victim/staff pairs")
    parser.add_argument("--staff", type=int, default=5, help="staff accounts sharing the pairs")
    parser.add_argument("--rate", type=float, default=1000, help="messages per second, in all")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--drain", type=float, default=30, help="max wait for stragglers")
    parser.add_argument(
        "--profile", action="store_true", help="run the servers under cProfile; print the top"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if args.staff > args.pairs:
        args.staff = args.pairs
    if args.staff > 10:
        parser.error("--staff: at most 10 (staff logins are rate-limited to 30/minute)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_nofile()
    if limit[0] < args.connections + 1000:
        say(f"warning: this process may open only {limit[0]} files")
    work = Workspace(args)

    def terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    code = 0
    try:
        connections, latency = asyncio.run(run(args, work))
        report(args, connections, latency)
    except KeyboardInterrupt:
        say("\ninterrupted")
        code = 130
    except Exception as exc:
        say(f"\nbenchmark failed: {exc!r}")
        for server in work.servers:
            say(f"--- {server.name} log tail:\n{server.log_tail()}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        work.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
