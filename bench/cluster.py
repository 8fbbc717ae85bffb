"""A local Helpline cluster: several `helpline serve` processes behind nginx, on loopback.

    .venv/bin/python bench/cluster.py                 # two instances; Ctrl-C stops and cleans up
    .venv/bin/python bench/cluster.py --instances 3
    .venv/bin/python bench/cluster.py --blob-backend s3   # HELPLINE_S3_* from this environment

Also a module (`from bench.cluster import Cluster`), used by tests/cluster/ and
bench/chat_cluster.py:

    with Cluster(instances=2) as cluster:
        cluster.url            # nginx, balancing over the instances
        cluster.pinned_url(1)  # nginx, but always to instance 1 (tests place clients with it)
        cluster.kill(0)        # SIGKILL instance 0's process group

What it makes, and removes again (on leaving the block, at exit, on SIGINT/SIGTERM in the
command): a temporary directory (the instances' shared data directory with one master key file
and the evidence blobs, the logs, nginx's config, pid and temp files), a fresh PostgreSQL
database (created, migrated, dropped `WITH (FORCE)`), a Redis database of its own (the first
empty one of 1..15, claimed with a key and flushed afterwards; pub/sub channels are not per
database in Redis, but every chat channel names a random case id), the instances (each
`python -m helpline.cli serve` in a process group of its own, killed as a group) and nginx
(`nginx -p <tmp> -c <generated conf> -g 'daemon off;'` as a child process; the system's nginx
service is never touched).

The generated nginx config is the one of deploy/nginx.conf in what matters here: no client
address forwarded (X-Forwarded-For, X-Real-IP and Forwarded are removed), websockets proxied
with Upgrade/Connection and a long read timeout, request bodies streamed, no access log. For
tests it adds what production must not have: `/instance/<n>/…` locations that reach one
instance only, and an `X-Cluster-Upstream` response header naming the instance that answered
(its loopback address). Both are in this generated file only; the app knows nothing of them.
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
import atexit
import contextlib
import ctypes
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

HOST = "127.0.0.1"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
UPSTREAM_HEADER = "x-cluster-upstream"
REDIS_CLAIM_KEY = "helpline-cluster:owner"
PR_SET_PDEATHSIG = 1
START_TIMEOUT = 60.0


class ClusterError(RuntimeError):
    pass


_RUNNING: list[Cluster] = []  # started and not yet stopped, for `stop_on_signals`


def stop_on_signals(*signals: int) -> None:
    """On any of `signals`, stop every running cluster here and now, then exit (128 + the
    signal). For commands: raising from a signal handler into an event loop that is busy
    cancelling its tasks can leave nothing to run the cleanup."""

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not interrupt cleanup
        for cluster in list(_RUNNING):
            with contextlib.suppress(Exception):
                cluster.stop()
        print(f"\nstopped by signal {signum}; cleaned up", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    for sig in signals:
        signal.signal(sig, handler)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def find_nginx() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, which may not be on a user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _die_with_parent() -> None:
    """In a child before exec: stop when the process that started it dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill_group(process: subprocess.Popen[bytes], first: int | None = signal.SIGTERM) -> None:
    """Stop a child started with `start_new_session` and everything it started (`first`:
    the signal to ask with, None if it was asked already); SIGKILL if it takes too long."""
    if process.poll() is not None:
        return
    if first is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, first)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _pg_dsn(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(_pg_dsn(url, "postgres"), timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@dataclass
class Instance:
    """One `helpline serve` process."""

    index: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        """As nginx names it in `$upstream_addr`."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Cluster:
    """`instances` app processes on one PostgreSQL database and one Redis database, behind
    nginx. Use as a context manager, or call `start()` and `stop()` (also run at exit)."""

    instances: int = 2
    postgres: str = DEFAULT_POSTGRES
    redis: str = DEFAULT_REDIS
    env: Mapping[str, str] = field(default_factory=dict)  # more HELPLINE_* for the instances
    log_level: str = "WARNING"
    keep: bool = False  # keep the temporary directory (logs) afterwards
    nginx_binary: str | None = None

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError("a cluster has at least one instance")
        self.tmp: Path | None = None
        self.database: str | None = None
        self.database_url = ""
        self.redis_url = ""
        self._redis_claim: tuple[str, int, str] | None = None
        self.nodes: list[Instance] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._stopped = True

    # ------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def pinned_url(self, index: int, scheme: str = "http") -> str:
        """Through nginx, but always to instance `index` (a test-only location)."""
        return f"{scheme}://{HOST}:{self.port}/instance/{index}"

    def instance_of(self, headers: Mapping[str, str]) -> int:
        """Which instance answered, from the `X-Cluster-Upstream` header nginx added."""
        value = {k.lower(): v for k, v in headers.items()}.get(UPSTREAM_HEADER, "")
        # after a failed attempt nginx lists every upstream it tried: the last one answered
        answered = value.split(",")[-1].strip().split(" : ")[-1].strip()
        for node in self.nodes:
            if node.address == answered:
                return node.index
        raise ClusterError(f"no instance answers to {value!r}")

    @property
    def data_dir(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "data"

    # ------------------------------------------------------------ life cycle

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Cluster:
        """Make everything and wait until nginx and every instance answer `/readyz`."""
        nginx = self.nginx_binary or find_nginx()
        if nginx is None:
            raise ClusterError("nginx not found: apt-get install nginx")
        self._stopped = False
        _RUNNING.append(self)
        atexit.register(self.stop)
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix="helpline-cluster-"))
            self._create_database()
            self._claim_redis()
            self.port = free_port()
            # the one key file all instances read (what `helpline keys init` writes)
            from helpline.core.crypto import write_new_key_file

            write_new_key_file(self.data_dir / "master.key")
            self._helpline("migrate")
            for index in range(self.instances):
                self.nodes.append(Instance(index, free_port(), self.tmp / f"app{index}.log"))
            for node in self.nodes:
                self._start_instance(node)
            self._start_nginx(nginx)
            deadline = time.monotonic() + START_TIMEOUT
            for node in self.nodes:
                self._wait_ready(node.url, deadline, node)
            self._wait_ready(self.url, deadline, None)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, index: int, signum: int = signal.SIGKILL) -> None:
        """Kill instance `index` (its whole process group), as a crash would; waits for it."""
        node = self.nodes[index]
        assert node.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signum)
        node.process.wait(15)

    def restart(self, index: int) -> None:
        """Start instance `index` again on its port and wait until it is ready."""
        node = self.nodes[index]
        if node.alive:
            raise ClusterError(f"instance {index} is running")
        self._start_instance(node)
        self._wait_ready(node.url, time.monotonic() + START_TIMEOUT, node)

    def stop(self) -> None:
        """Undo everything `start` made. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)
        if self.nginx is not None:
            with contextlib.suppress(Exception):
                _kill_group(self.nginx, signal.SIGQUIT)  # graceful: closes the sockets
            self.nginx = None
        running = [n.process for n in self.nodes if n.process is not None]
        for process in running:  # all at once: each takes a few seconds to shut down
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            with contextlib.suppress(Exception):
                _kill_group(process, None)
        if self.database is not None:
            try:
                _pg_admin(self.postgres, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
                self.database = None
            except Exception as exc:  # say so: someone must drop it by hand
                print(f"cluster: could not drop database {self.database}: {exc!r}", file=sys.stderr)
        self._release_redis()
        if self.tmp is not None:
            if self.keep:
                print(f"cluster: logs kept in {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # ------------------------------------------------------------ the parts

    def _create_database(self) -> None:
        from sqlalchemy.engine import make_url

        name = f"helpline_cluster_{secrets.token_hex(4)}"
        try:
            _pg_admin(self.postgres, f'CREATE DATABASE "{name}"')
        except Exception as exc:
            raise ClusterError(f"PostgreSQL at {self.postgres}: {exc}") from exc
        self.database = name
        url = make_url(self.postgres).set(drivername="postgresql+asyncpg", database=name)
        self.database_url = url.render_as_string(hide_password=False)

    def _claim_redis(self) -> None:
        """Take the first empty Redis database 1..15 and mark it ours."""
        import redis

        token = secrets.token_hex(8)
        base = redis.Redis.from_url(self.redis, socket_connect_timeout=3)
        try:
            base.ping()
        except redis.RedisError as exc:
            raise ClusterError(f"Redis at {self.redis}: {exc}") from exc
        finally:
            base.close()
        for number in range(1, 16):
            url = self._redis_db_url(number)
            client = redis.Redis.from_url(url, socket_connect_timeout=3)
            try:
                if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, token, nx=True):
                    self._redis_claim = (url, number, token)
                    self.redis_url = url
                    return
            except redis.ResponseError:  # fewer databases configured
                break
            finally:
                client.close()
        raise ClusterError("no empty Redis database among 1..15")

    def _redis_db_url(self, number: int) -> str:
        scheme, _, rest = self.redis.partition("://")
        hostport = rest.split("/", 1)[0]
        return f"{scheme}://{hostport}/{number}"

    def _release_redis(self) -> None:
        if self._redis_claim is None:
            return
        import redis

        url, _, token = self._redis_claim
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        try:
            if client.get(REDIS_CLAIM_KEY) == token.encode():  # still ours: empty it
                client.flushdb()
        except redis.RedisError as exc:
            print(f"cluster: could not empty Redis database {url}: {exc!r}", file=sys.stderr)
        finally:
            client.close()
        self._redis_claim = None

    def instance_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
        env.update(
            HELPLINE_DATA_DIR=str(self.data_dir),
            HELPLINE_DATABASE_URL=self.database_url,
            HELPLINE_REDIS_URL=self.redis_url,
            HELPLINE_BASE_URL=self.url,  # what browsers see: the proxy (staff Origin checks)
            HELPLINE_OPENING_HOURS="mo-su 00:00-24:00",
            HELPLINE_LOG_LEVEL=self.log_level,
        )
        env.update(self.env)
        return env

    def _helpline(self, *arguments: str) -> None:
        assert self.tmp is not None
        done = subprocess.run(
            [sys.executable, "-m", "helpline.cli", *arguments],
            env=self.instance_env(),
            cwd=self.tmp,  # not the source tree: `-m` puts the working directory on sys.path
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise ClusterError(f"helpline {' '.join(arguments)}: {done.stdout}{done.stderr}")

    def _start_instance(self, node: Instance) -> None:
        assert self.tmp is not None
        with open(node.log_path, "ab") as log:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "helpline.cli", "serve", "--host", HOST]
                + ["--port", str(node.port)],
                env=self.instance_env(),
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,  # its own process group: killed as one
            )

    def nginx_config(self) -> str:
        assert self.tmp is not None
        tmp = self.tmp
        servers = "\n".join(
            f"        server {n.address} max_fails=1 fail_timeout=10s;" for n in self.nodes
        )
        pinned_upstreams = "\n".join(
            f"    upstream helpline_{n.index} {{ server {n.address}; }}" for n in self.nodes
        )
        pinned_locations = "\n".join(
            f"""
        location /instance/{n.index}/ws/ {{
            proxy_pass http://helpline_{n.index}/ws/;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
        location /instance/{n.index}/ {{
            proxy_pass http://helpline_{n.index}/;
        }}"""
            for n in self.nodes
        )
        # the master runs as whoever started it; as root its workers would switch to `nobody`,
        # who may not write the temp directories below
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        return f"""# generated by bench/cluster.py for a local test cluster; see its docstring
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
# loopback only: at "error" nginx names the client (always 127.0.0.1 here)
error_log {tmp}/nginx-error.log error;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;

    upstream helpline {{
        least_conn;
{servers}
        keepalive 32;
    }}
{pinned_upstreams}

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    proxy_set_header X-Forwarded-For "";
    proxy_set_header X-Real-IP "";
    proxy_set_header Forwarded "";
    client_max_body_size 1g;
    proxy_request_buffering off;
    proxy_max_temp_file_size 0;
    proxy_connect_timeout 5s;
    proxy_read_timeout 60s;
    proxy_send_timeout 60s;
    # a dead instance refuses the connection: try the next one (never for a POST that may
    # have reached the app; nginx does not retry those by default)
    proxy_next_upstream error timeout;

    server {{
        listen {HOST}:{self.port};
        server_name _;
        # test only: which instance answered
        add_header X-Cluster-Upstream $upstream_addr always;

        location /ws/ {{
            proxy_pass http://helpline;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
        location / {{
            proxy_pass http://helpline;
        }}
{pinned_locations}
    }}
}}
"""

    def _start_nginx(self, binary: str) -> None:
        assert self.tmp is not None
        conf = self.tmp / "nginx.conf"
        conf.write_text(self.nginx_config())
        log = self.tmp / "nginx-error.log"
        with open(self.tmp / "nginx.out", "ab") as out:
            self.nginx = subprocess.Popen(
                [binary, "-p", str(self.tmp), "-e", str(log), "-c", str(conf)]
                + ["-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )

    def _wait_ready(self, url: str, deadline: float, node: Instance | None) -> None:
        import httpx

        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if node is not None and not node.alive:
                    raise ClusterError(f"instance {node.index} exited:\n{node.log_tail()}")
                if self.nginx is not None and self.nginx.poll() is not None:
                    raise ClusterError(f"nginx exited:\n{self._nginx_log()}")
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    answer = http.get(f"{url}/readyz")
                    if answer.status_code == 200 and answer.json()["status"] == "ok":
                        return
                time.sleep(0.05)
        raise ClusterError(
            f"{url} not ready after {START_TIMEOUT:.0f} s:\n"
            + (node.log_tail() if node is not None else self._nginx_log())
        )

    def _nginx_log(self) -> str:
        assert self.tmp is not None
        parts = []
        for name in ("nginx.out", "nginx-error.log"):
            with contextlib.suppress(OSError):
                parts.append((self.tmp / name).read_text(errors="replace")[-3000:])
        return "\n".join(parts)


@contextlib.contextmanager
def running_cluster(**options: Any) -> Iterator[Cluster]:
    with Cluster(**options) as cluster:
        yield cluster


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A local Helpline cluster: instances behind nginx on 127.0.0.1."
    )
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server for a fresh database")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="server (a free db is chosen)")
    parser.add_argument(
        "--blob-backend",
        choices=["filesystem", "s3"],
        default="filesystem",
        help="evidence blobs in the shared data directory, or in the bucket that the "
        "HELPLINE_S3_* variables of this environment name",
    )
    parser.add_argument("--env", action="append", default=[], metavar="HELPLINE_X=VALUE")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env: dict[str, str] = {}
    if args.blob_backend == "s3":
        env.update({k: v for k, v in os.environ.items() if k.startswith("HELPLINE_S3_")})
        env["HELPLINE_BLOB_BACKEND"] = "s3"
    for pair in args.env:
        name, _, value = pair.partition("=")
        if not name.startswith("HELPLINE_"):
            raise SystemExit(f"--env {name}: only HELPLINE_ variables")
        env[name] = value
    cluster = Cluster(
        args.instances,
        postgres=args.postgres,
        redis=args.redis,
        env=env,
        log_level=args.log_level,
        keep=args.keep,
    )

    stop_on_signals(signal.SIGTERM, signal.SIGHUP)
    try:
        with cluster:
            print(f"nginx:     {cluster.url}  (balancing over {args.instances} instances)")
            for node in cluster.nodes:
                print(
                    f"instance {node.index}: {node.url} (pid {node.pid}), "
                    f"through nginx {cluster.pinned_url(node.index)}/"
                )
            print(f"database:  {cluster.database} (dropped at the end)")
            print(f"redis:     {cluster.redis_url} (emptied at the end)")
            print(f"data dir:  {cluster.data_dir}")
            print("Ctrl-C stops everything and cleans up.", flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
