"""Evidence vault benchmark: crypto, disk, vault and HTTP upload throughput in one run.

    .venv/bin/python bench/evidence.py                  # 1 GiB, the figures in docs/benchmarks.md
    .venv/bin/python bench/evidence.py --size-mib 256   # a quicker run
    .venv/bin/python bench/evidence.py --backend s3     # the vault in a bucket (local moto)

All steps work on the same bytes: one 1 MiB block from os.urandom (its first bytes made into an
MP4 `ftyp` box, so the app's type sniffing accepts the upload), repeated --size-mib times.

1. raw AES-256-GCM of `cryptography` (AESGCM.encrypt), one thread, over 64 KiB chunks (the
   vault's chunk size) and over 1 MiB chunks;
2. SHA-256 of `hashlib` (the vault hashes the plaintext too);
3. the disk's own sequential write rate in the data directory, N MiB in 1 MiB blocks and then
   fsync, timed together, in two ways: plain writes, and writes with the hint the vault gives
   (sync_file_range every 8 MiB, so writeback starts early); and `Vault.store` in this
   process: the stream encrypted, hashed and written, fsync included. The three alternate,
   round by round, so that none gets the machine's slow or fast spells alone, after one
   untimed write (in this VM, page cache memory the guest has not used for a while is slow to
   fill the first time);
4. an upload through the real endpoint `POST /api/chat/evidence/files`: `helpline migrate`,
   then `helpline serve` as a subprocess (temp data directory, SQLite, random master key),
   a case from `POST /api/chat/start`, and a multipart body generated on the fly; the server's
   VmRSS is sampled every 50 ms during the upload and its VmHWM read at the end.

With `--backend s3`, steps 3 and 4 use the S3 blob backend against moto's S3 server, started
as a subprocess on 127.0.0.1 (a port of its own, stopped at the end): step 3 times a plain
multipart upload of the same bytes in the vault's part size (the bucket's own rate, in place
of the disk's) and `Vault.store` into the bucket, and reports the most bytes a store held in
part buffers; step 4 runs the server with `HELPLINE_BLOB_BACKEND=s3`. moto is a Python test
server that keeps objects in memory, so these figures say what the vault adds on top of a
slow S3 endpoint and what it holds in memory, not what AWS or MinIO would reach.

Steps 1-3 keep the best of --repeat runs and print all of them (and medians); the disk rate is
the better of its two ways. Step 4 runs once. Before measuring it waits (up to --wait-minutes)
until no `bench/chat.py` is running, so the two benchmarks do not share the 2 cores. It only
talks to 127.0.0.1, removes its temp directory and stops its server also on errors and Ctrl-C,
and is not part of the test suite. Figures: docs/benchmarks.md. MB is 10^6 bytes, MiB 2^20.
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
import hashlib
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
MIB = 1024 * 1024
PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
# an MP4 `ftyp` box (24 bytes): the upload must sniff as an accepted type
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
GOAL_HTTP_MB_S = 200.0
GOAL_RSS_MIB = 150.0


def say(text: str) -> None:
    print(text, flush=True)


def mb_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def cpu_seconds() -> float:
    """This process's user + system time, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> bool:
    """Set VmHWM of `pid` (our own child) to its current RSS, so that VmHWM read later is the
    peak since now. Linux >= 4.0; False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy_seconds() -> float:
    """CPU time spent by all cores outside idle, iowait and steal, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4] - values[7]) / CLK_TCK


class OtherLoad:
    """How many cores, on average, something other than this process and `pid` kept busy
    since `__init__`: other programs, and kernel threads (disk writeback counts here)."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.start = (time.perf_counter(), machine_busy_seconds(), self._ours())

    def _ours(self) -> float:
        return cpu_seconds() + (proc_cpu_seconds(self.pid) if self.pid else 0.0)

    def cores(self) -> float:
        wall, busy, ours = self.start
        elapsed = time.perf_counter() - wall
        other = machine_busy_seconds() - busy - (self._ours() - ours)
        return max(0.0, other) / elapsed if elapsed > 0 else 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def make_block() -> bytes:
    """1 MiB of random bytes starting like an MP4 file, checked with the app's own sniffer."""
    from helpline.evidence.sniff import sniff

    for _ in range(10):
        block = FTYP + os.urandom(MIB - len(FTYP))
        with contextlib.suppress(Exception):
            if sniff(block[:8192]).mime == "video/mp4":
                return block
    raise RuntimeError("could not make a block the app sniffs as video/mp4")


class Progress:
    """Prints `label: n / total MiB, rate` every `every` MiB."""

    def __init__(self, label: str, total_mib: int, every: int = 128) -> None:
        self.label = label
        self.total = total_mib
        self.every = every
        self.start = time.perf_counter()

    def tick(self, done_mib: int) -> None:
        if done_mib % self.every == 0 or done_mib == self.total:
            elapsed = time.perf_counter() - self.start
            rate = done_mib * MIB / elapsed / 1e6 if elapsed > 0 else 0.0
            say(f"    {self.label}: {done_mib:5d} / {self.total} MiB  {rate:8.0f} MB/s")


# ---------------------------------------------------------------- machine and other load


def machine_facts() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor() or "?",
    )
    flags_line = next((ln for ln in cpuinfo.splitlines() if ln.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[1].split()) if flags_line else set()
    wanted = ("aes", "pclmulqdq", "vaes", "vpclmulqdq", "sha_ni", "avx2", "avx512f")
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    from cryptography.hazmat.backends.openssl import backend

    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "flags": ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted),
        "python": platform.python_version(),
        "openssl": backend.openssl_version_text(),
    }


def other_benchmarks() -> list[str]:
    """Command lines of running `bench/chat.py` processes (not this one)."""
    done = subprocess.run(
        ["pgrep", "-af", "bench/chat.py"], capture_output=True, text=True, check=False
    )
    mine = {str(os.getpid()), str(os.getppid())}
    return [ln for ln in done.stdout.splitlines() if ln.split(" ", 1)[0] not in mine]


def wait_for_quiet(minutes: float) -> bool:
    """Wait until no chat benchmark runs, polling every 10 s. False if it still runs."""
    deadline = time.monotonic() + minutes * 60
    running = other_benchmarks()
    while running:
        if time.monotonic() >= deadline:
            say(f"  bench/chat.py still running after {minutes:g} min: measuring anyway")
            return False
        say(f"  waiting for bench/chat.py to finish: {running[0][:100]}")
        time.sleep(10)
        running = other_benchmarks()
    return True


class ChatWatch(threading.Thread):
    """Polls for bench/chat.py every 2 s while we measure; `overlaps` names the steps during
    which one ran (their figures are then distorted)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.step = ""
        self.overlaps: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            step = self.step
            if other_benchmarks() and step and step not in self.overlaps:
                self.overlaps.append(step)
            self.stopping.wait(2)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


# ---------------------------------------------------------------- 1-3: crypto, hashing, disk


def bench_aesgcm(block: bytes, size_mib: int, chunk: int) -> float:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(os.urandom(32))
    view = memoryview(block)
    prefix = os.urandom(4)
    counter = 0
    start = time.perf_counter()
    for _ in range(size_mib):
        for offset in range(0, MIB, chunk):
            aead.encrypt(prefix + counter.to_bytes(8, "big"), view[offset : offset + chunk], None)
            counter += 1
    return mb_s(size_mib * MIB, time.perf_counter() - start)


def bench_sha256(block: bytes, size_mib: int) -> tuple[float, str]:
    digest = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(size_mib):
        digest.update(block)
    return mb_s(size_mib * MIB, time.perf_counter() - start), digest.hexdigest()


def bench_disk(block: bytes, size_mib: int, directory: Path, *, early_writeback: bool) -> float:
    """Write `size_mib` × `block` to a new file and fsync it. With `early_writeback`, give the
    kernel the hint the vault gives, with the vault's own function and spacing."""
    from helpline.evidence.blobstore import _WRITEBACK_BYTES, _start_writeback

    path = directory / "disk-write.bin"
    progress = Progress("disk, early writeback" if early_writeback else "disk write", size_mib)
    try:
        start = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            flushed = 0
            for index in range(size_mib):
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
                written = (index + 1) * MIB
                if early_writeback and written - flushed >= _WRITEBACK_BYTES:
                    _start_writeback(fd, flushed, written - flushed)
                    flushed = written
                progress.tick(index + 1)
            os.fsync(fd)
        finally:
            os.close(fd)
        return mb_s(size_mib * MIB, time.perf_counter() - start)
    finally:
        path.unlink(missing_ok=True)


def best(runs: int, measure: Callable[[], float]) -> float:
    results = [measure() for _ in range(runs)]
    if runs > 1:
        say(f"    runs: {', '.join(f'{r:.0f}' for r in results)} MB/s")
    return max(results)


# ---------------------------------------------------------------- 3: the vault in-process


@dataclass
class VaultResult:
    mb_s: float
    seconds: float
    cpu_seconds: float
    sha256: str
    size: int
    most_buffered: int = 0  # in a bucket: the most bytes the store held in part buffers


async def bench_vault(block: bytes, size_mib: int, where: Path | Bucket) -> VaultResult:
    from helpline.evidence.s3blobs import S3Backend
    from helpline.evidence.vault import Vault

    backend = S3Backend(where.client(), where.name) if isinstance(where, Bucket) else None
    vault = Vault(backend or where)  # type: ignore[arg-type]
    progress = Progress("vault store", size_mib)

    async def stream() -> AsyncIterator[bytes]:
        for index in range(size_mib):
            yield block
            progress.tick(index + 1)

    cpu = cpu_seconds()
    start = time.perf_counter()
    blob = await vault.store(stream(), os.urandom(32), max_bytes=size_mib * MIB)
    seconds = time.perf_counter() - start
    used = cpu_seconds() - cpu
    if backend is None:
        vault.path(blob.name).unlink()  # not `destroy`: its zero overwrite costs another GiB
    else:
        await vault.destroy(blob.name)  # a DeleteObject: moto keeps objects in memory
    most = backend.most_buffered if backend is not None else 0
    return VaultResult(mb_s(blob.size, seconds), seconds, used, blob.sha256, blob.size, most)


def bench_bucket(block: bytes, size_mib: int, bucket: Bucket) -> float:
    """The bucket's own rate: `size_mib` × `block` as one multipart upload in the vault's part
    size, parts sent one after the other from this thread, completed; then deleted."""
    from helpline.evidence.s3blobs import PART_SIZE

    client = bucket.client()
    key = f"bench/{secrets.token_hex(8)}"
    progress = Progress("bucket upload", size_mib)
    per_part = PART_SIZE // MIB
    start = time.perf_counter()
    upload = client.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    parts = []
    for number, first in enumerate(range(0, size_mib, per_part), 1):
        count = min(per_part, size_mib - first)
        answer = client.upload_part(
            Bucket=bucket.name, Key=key, UploadId=upload, PartNumber=number, Body=block * count
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        progress.tick(first + count)
    client.complete_multipart_upload(
        Bucket=bucket.name, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    seconds = time.perf_counter() - start
    client.delete_object(Bucket=bucket.name, Key=key)
    return mb_s(size_mib * MIB, seconds)


@dataclass
class Bucket:
    """moto's S3 server (`python -m moto.server`) on 127.0.0.1, as a subprocess, with one
    bucket."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    name: str = "helpline-bench"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self) -> Any:
        from helpline.evidence.s3blobs import s3_client

        return s3_client(
            endpoint_url=self.url, region="us-east-1", access_key_id="bench",
            secret_access_key="bench",
        )  # fmt: skip

    def env(self) -> dict[str, str]:
        """The server's settings for this bucket."""
        return {
            "HELPLINE_BLOB_BACKEND": "s3",
            "HELPLINE_S3_BUCKET": self.name,
            "HELPLINE_S3_ENDPOINT_URL": self.url,
            "HELPLINE_S3_ACCESS_KEY_ID": "bench",
            "HELPLINE_S3_SECRET_ACCESS_KEY": "bench",
        }

    def start(self) -> None:
        self.root.mkdir(exist_ok=True)
        with open(self.root / "moto.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError("the S3 server (moto) exited; see moto.log")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                self.client().create_bucket(Bucket=self.name)
                return
            time.sleep(0.1)
        raise TimeoutError(f"the S3 server (moto) was not ready after {timeout} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


# ---------------------------------------------------------------- 4: HTTP upload


def _child_setup() -> None:
    """In the server subprocess before exec: die with us, whatever happens to us."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Server:
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] = field(default_factory=dict)  # more HELPLINE_* variables

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
        env.update(
            HELPLINE_DATA_DIR=str(self.root / "data"),
            HELPLINE_MASTER_KEY=base64.b64encode(os.urandom(32)).decode(),
            HELPLINE_EVIDENCE_MAX_FILE_MB="4096",
            HELPLINE_EVIDENCE_MAX_CASE_MB="8192",
            HELPLINE_LOG_LEVEL="WARNING",
            HELPLINE_BASE_URL=self.url,
            HELPLINE_OPENING_HOURS="mo-su 00:00-24:00",  # chat start whatever the hour
        )
        env.update(self.settings)
        return env

    def start(self) -> None:
        env = self.env()
        command = [sys.executable, "-m", "helpline.cli"]
        done = subprocess.run(
            [*command, "migrate"],
            env=env,
            cwd=self.root,  # not the source tree: `-m` puts the cwd on sys.path
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"helpline migrate failed:\n{done.stdout}{done.stderr}")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*command, "serve", "--host", HOST, "--port", str(self.port)],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the server
            )

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    answer = await http.get("/readyz")
                    if answer.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"the server was not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class RssSampler(threading.Thread):
    """VmRSS of `pid` every `interval` seconds, in a thread so a busy event loop cannot skip
    samples."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.peak_kib = max(self.peak_kib, proc_status_kib(self.pid, "VmRSS"))
                self.samples += 1
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


@dataclass
class HttpResult:
    mb_s: float
    seconds: float
    status: int
    item: dict[str, Any]
    rss_before_mib: float
    rss_peak_mib: float  # the highest VmRSS sample during the upload
    hwm_mib: float  # VmHWM at the end: the peak since just before the upload (hwm_reset)
    hwm_reset: bool  # False: VmHWM could not be reset and covers the server's start-up too
    lifetime_hwm_mib: float  # VmHWM just before the upload: start-up's peak
    rss_after_mib: float
    samples: int
    server_cpu: float
    client_cpu: float


async def bench_http(block: bytes, size_mib: int, server: Server) -> HttpResult:
    timeout = httpx.Timeout(connect=10, read=600, write=600, pool=10)
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout) as http:
        started = await http.post("/api/chat/start", json={"language": "nl"})
        started.raise_for_status()
        token = started.json()["token"]

        boundary = secrets.token_hex(16)
        head = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="bench.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        progress = Progress("http upload", size_mib)

        async def body() -> AsyncIterator[bytes]:
            yield head
            for index in range(size_mib):
                yield block
                progress.tick(index + 1)
            yield tail

        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size_mib * MIB + len(tail)),
        }
        lifetime_hwm = proc_status_kib(server.pid, "VmHWM")  # start-up included
        hwm_reset = reset_peak_rss(server.pid)
        rss_before = proc_status_kib(server.pid, "VmRSS")
        sampler = RssSampler(server.pid)
        sampler.start()
        server_cpu = proc_cpu_seconds(server.pid)
        client_cpu = cpu_seconds()
        start = time.perf_counter()
        try:
            answer = await http.post("/api/chat/evidence/files", content=body(), headers=headers)
            seconds = time.perf_counter() - start
        finally:
            sampler.stop()
        server_cpu = proc_cpu_seconds(server.pid) - server_cpu
        client_cpu = cpu_seconds() - client_cpu
        hwm = proc_status_kib(server.pid, "VmHWM")
        rss_after = proc_status_kib(server.pid, "VmRSS")
        if answer.status_code != 201:
            raise RuntimeError(
                f"upload answered {answer.status_code}: {answer.text[:500]}\n{server.log_tail()}"
            )
        return HttpResult(
            mb_s=mb_s(size_mib * MIB, seconds),
            seconds=seconds,
            status=answer.status_code,
            item=answer.json(),
            rss_before_mib=rss_before / 1024,
            rss_peak_mib=max(sampler.peak_kib, rss_after) / 1024,
            hwm_mib=hwm / 1024,
            hwm_reset=hwm_reset,
            lifetime_hwm_mib=lifetime_hwm / 1024,
            rss_after_mib=rss_after / 1024,
            samples=sampler.samples,
            server_cpu=server_cpu,
            client_cpu=client_cpu,
        )


# ---------------------------------------------------------------- the run


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


async def run(args: argparse.Namespace, root: Path, servers: list[Server | Bucket]) -> None:
    say("machine:")
    for key, value in machine_facts().items():
        say(f"  {key:8s} {value}")
    say("waiting for a quiet machine:")
    quiet = args.no_wait or wait_for_quiet(args.wait_minutes)
    say(f"  load average before measuring: {os.getloadavg()[0]:.2f} (1 min)")

    block = make_block()
    others: dict[str, float] = {}
    watch = ChatWatch()
    watch.step = "AES-GCM"
    watch.start()
    try:
        await measure(args, block, root, servers, watch, others, quiet)
    finally:
        watch.stop()


async def measure(
    args: argparse.Namespace,
    block: bytes,
    root: Path,
    servers: list[Server | Bucket],
    watch: ChatWatch,
    others: dict[str, float],
    quiet: bool,
) -> None:
    size = args.size_mib
    load = OtherLoad()
    say(f"\n1. raw AES-256-GCM (cryptography, one thread), {size} MiB, best of {args.repeat}")
    aes_64k = best(args.repeat, lambda: bench_aesgcm(block, size, 64 * 1024))
    say(f"    64 KiB chunks: {aes_64k:8.0f} MB/s")
    aes_1m = best(args.repeat, lambda: bench_aesgcm(block, size, MIB))
    say(f"    1 MiB chunks:  {aes_1m:8.0f} MB/s")
    others["AES-GCM"] = load.cores()
    watch.step = "SHA-256"
    load = OtherLoad()

    say(f"\n2. SHA-256 (hashlib), {size} MiB, best of {args.repeat}")
    sha_runs = [bench_sha256(block, size) for _ in range(args.repeat)]
    sha = max(rate for rate, _ in sha_runs)
    if args.repeat > 1:
        say(f"    runs: {', '.join(f'{rate:.0f}' for rate, _ in sha_runs)} MB/s")
    digest = sha_runs[0][1]
    say(f"    SHA-256:       {sha:8.0f} MB/s")
    others["SHA-256"] = load.cores()
    data = root / "data"
    data.mkdir(mode=0o700)
    bucket: Bucket | None = None
    if args.backend == "s3":
        bucket = Bucket(root / "moto")
        servers.append(bucket)
        bucket.start()
        bucket.wait_ready()
        say(f"\nS3 server (moto) up (pid {bucket.process.pid if bucket.process else '?'}, "
            f"{bucket.url}), bucket {bucket.name}")  # fmt: skip
        stored = await measure_bucket(args, block, bucket, digest, watch, others)
    else:
        stored = await measure_disk(args, block, data, digest, watch, others)

    say(f"\n4. HTTP upload through POST /api/chat/evidence/files, {size} MiB")
    server = Server(root / "server", settings=bucket.env() if bucket is not None else {})
    crypto = [
        ("AES-256-GCM encrypt, 64 KiB chunks, 1 thread", f"{aes_64k:.0f} MB/s"),
        ("AES-256-GCM encrypt, 1 MiB chunks, 1 thread", f"{aes_1m:.0f} MB/s"),
        ("SHA-256 (hashlib), 1 thread", f"{sha:.0f} MB/s"),
    ]
    await measure_http(
        args, block, server, servers, digest, max(aes_64k, aes_1m), crypto, stored, watch, others,
        quiet,
    )  # fmt: skip


@dataclass
class StoreStep:
    """What step 3 found: the rate the vault is held to (the disk's or the bucket's), the best
    vault run, and the table rows."""

    bound_name: str
    bound: float
    vault: VaultResult
    rows: list[tuple[str, str]]


async def measure_disk(
    args: argparse.Namespace,
    block: bytes,
    data: Path,
    digest: str,
    watch: ChatWatch,
    others: dict[str, float],
) -> StoreStep:
    """Step 3 on the filesystem backend."""
    size = args.size_mib
    say(
        f"\n3. disk write and Vault.store ({data}), {size} MiB, {args.repeat} rounds of: disk "
        "write + fsync, the same with early writeback, Vault.store"
    )
    # The first big write after a pause is slow here whatever the method: the VM faults in the
    # guest memory the page cache gets (it was handed back to the host while free). One
    # untimed write first, so that the first timed run does not pay for it.
    warm_up = bench_disk(block, size, data, early_writeback=False)
    say(f"    warm-up write + fsync, not counted: {warm_up:.0f} MB/s")
    plain: list[float] = []
    early: list[float] = []
    vaults: list[VaultResult] = []
    disk_loads: list[float] = []
    vault_loads: list[float] = []
    for round_number in range(1, args.repeat + 1):
        watch.step = "disk"
        load = OtherLoad()
        plain.append(bench_disk(block, size, data, early_writeback=False))
        early.append(bench_disk(block, size, data, early_writeback=True))
        disk_loads.append(load.cores())
        watch.step = "vault"
        load = OtherLoad()
        vaults.append(await bench_vault(block, size, data / "vault"))
        vault_loads.append(load.cores())
        say(
            f"    round {round_number}: disk {plain[-1]:.0f}, with early writeback "
            f"{early[-1]:.0f}, vault {vaults[-1].mb_s:.0f} MB/s (other load: "
            f"{disk_loads[-1]:.2f} cores during the disk runs, {vault_loads[-1]:.2f} during "
            "the vault's)"
        )
    others["disk (incl. kernel writeback), worst round"] = max(disk_loads)
    others["vault (incl. kernel writeback), worst round"] = max(vault_loads)
    disk_plain, disk_early = max(plain), max(early)
    disk = max(disk_plain, disk_early)
    vault = max(vaults, key=lambda v: v.mb_s)
    plain_median, early_median = statistics.median(plain), statistics.median(early)
    vault_median = statistics.median([v.mb_s for v in vaults])
    for run in vaults:
        if run.sha256 != digest or run.size != size * MIB:
            raise RuntimeError("the vault's SHA-256 or size differs from the stream's")
    say(f"    disk write + fsync:        {disk_plain:8.0f} MB/s (median {plain_median:.0f})")
    say(f"    ... with early writeback:  {disk_early:8.0f} MB/s (median {early_median:.0f})")
    say(
        f"    vault:                     {vault.mb_s:8.0f} MB/s (median {vault_median:.0f}; best "
        f"run {vault.seconds:.2f} s, {vault.cpu_seconds:.2f} s CPU)"
    )
    disk_name = "disk write" if disk_plain >= disk_early else "disk with early writeback"
    return StoreStep(
        disk_name,
        disk,
        vault,
        [
            (
                "disk sequential write, 1 MiB blocks + fsync",
                f"{disk_plain:.0f} MB/s (median {plain_median:.0f})",
            ),
            (
                "the same with early writeback (as the vault)",
                f"{disk_early:.0f} MB/s (median {early_median:.0f})",
            ),
            (
                f"`Vault.store`, {size} MiB in-process",
                f"{vault.mb_s:.0f} MB/s (median {vault_median:.0f})",
            ),
        ],
    )


async def measure_bucket(
    args: argparse.Namespace,
    block: bytes,
    bucket: Bucket,
    digest: str,
    watch: ChatWatch,
    others: dict[str, float],
) -> StoreStep:
    """Step 3 on the S3 backend: the bucket's own upload rate and `Vault.store` into it,
    alternating round by round."""
    from helpline.evidence.s3blobs import PART_SIZE

    size = args.size_mib
    say(
        f"\n3. bucket upload and Vault.store into the bucket (moto at {bucket.url}), {size} MiB, "
        f"{args.repeat} rounds of: a plain multipart upload ({PART_SIZE // MIB} MiB parts), "
        "Vault.store"
    )
    plain: list[float] = []
    vaults: list[VaultResult] = []
    for round_number in range(1, args.repeat + 1):
        watch.step = "bucket"
        load = OtherLoad(bucket.process.pid if bucket.process else None)
        plain.append(await asyncio.to_thread(bench_bucket, block, size, bucket))
        others[f"bucket upload, round {round_number} (incl. moto)"] = load.cores()
        watch.step = "vault"
        load = OtherLoad(bucket.process.pid if bucket.process else None)
        vaults.append(await bench_vault(block, size, bucket))
        others[f"vault into the bucket, round {round_number} (incl. moto)"] = load.cores()
        say(f"    round {round_number}: bucket {plain[-1]:.0f}, vault {vaults[-1].mb_s:.0f} MB/s")
    for run in vaults:
        if run.sha256 != digest or run.size != size * MIB:
            raise RuntimeError("the vault's SHA-256 or size differs from the stream's")
    vault = max(vaults, key=lambda v: v.mb_s)
    plain_median = statistics.median(plain)
    vault_median = statistics.median([v.mb_s for v in vaults])
    most = max(v.most_buffered for v in vaults)
    say(f"    bucket multipart upload:   {max(plain):8.0f} MB/s (median {plain_median:.0f})")
    say(
        f"    vault into the bucket:     {vault.mb_s:8.0f} MB/s (median {vault_median:.0f}; best "
        f"run {vault.seconds:.2f} s, {vault.cpu_seconds:.2f} s CPU)"
    )
    say(f"    most held in part buffers by one store: {most / MIB:.1f} MiB (limit: 2 parts)")
    return StoreStep(
        "bucket upload",
        max(plain),
        vault,
        [
            (
                f"plain multipart upload to moto, {PART_SIZE // MIB} MiB parts",
                f"{max(plain):.0f} MB/s (median {plain_median:.0f})",
            ),
            (
                f"`Vault.store` into the bucket, {size} MiB in-process",
                f"{vault.mb_s:.0f} MB/s (median {vault_median:.0f})",
            ),
            ("most held in part buffers by one store", f"{most / MIB:.1f} MiB"),
        ],
    )


async def measure_http(
    args: argparse.Namespace,
    block: bytes,
    server: Server,
    servers: list[Server | Bucket],
    digest: str,
    aes: float,
    crypto: list[tuple[str, str]],
    stored: StoreStep,
    watch: ChatWatch,
    others: dict[str, float],
    quiet: bool,
) -> None:
    """Step 4, then the goals and the table."""
    size = args.size_mib
    vault = stored.vault
    server.root.mkdir()
    servers.append(server)
    server.start()
    await server.wait_ready()
    say(f"    server up (pid {server.pid}, {server.url})")
    watch.step = "HTTP upload"
    load = OtherLoad(server.pid)
    http = await bench_http(block, size, server)
    others["HTTP upload (incl. kernel writeback)"] = load.cores()
    if http.item.get("sha256") != digest or http.item.get("size") != size * MIB:
        raise RuntimeError(f"the stored item differs from the stream: {http.item}")
    say(
        f"    upload:        {http.mb_s:8.0f} MB/s  ({http.seconds:.2f} s; server "
        f"{http.server_cpu:.2f} s CPU, client {http.client_cpu:.2f} s CPU)"
    )
    say(
        f"    server RSS: before {http.rss_before_mib:.0f} MiB, peak sampled "
        f"{http.rss_peak_mib:.0f} MiB ({http.samples} samples), VmHWM "
        f"{http.hwm_mib:.0f} MiB ({'since the upload began' if http.hwm_reset else 'lifetime'}), "
        f"after {http.rss_after_mib:.0f} MiB; start-up peak {http.lifetime_hwm_mib:.0f} MiB"
    )
    say(f"    item: {http.item['media_type']}, sha256 matches the stream")

    bound_name, bound = min(
        (("AES-GCM", aes), (stored.bound_name, stored.bound)), key=lambda pair: pair[1]
    )
    peak = max(http.rss_peak_mib, http.hwm_mib)
    goals = [
        (
            "vault >= 1/2 min(AES-GCM, disk)"
            if stored.bound_name.startswith("disk")
            else "vault >= 1/2 min(AES-GCM, bucket)",
            f"{vault.mb_s:.0f} MB/s vs {bound / 2:.0f} MB/s (half of {bound_name})",
            vault.mb_s >= bound / 2,
        ),
        ("HTTP upload >= 200 MB/s", f"{http.mb_s:.0f} MB/s", http.mb_s >= GOAL_HTTP_MB_S),
        ("server peak RSS < 150 MiB", f"{peak:.0f} MiB", peak < GOAL_RSS_MIB),
    ]
    say("\ngoals:")
    for name, figure, met in goals:
        say(f"  {name:32s} {figure:45s} {verdict(met)}")
    say(f"\nCPU used by other processes and kernel threads meanwhile (cores, of {os.cpu_count()}):")
    for step, cores in others.items():
        say(f"  {step:45s} {cores:.2f}")
    watch.step = ""
    if not quiet:
        say("  bench/chat.py was still running when measuring began: figures may be low")
    if watch.overlaps:
        say(f"  bench/chat.py ran during: {', '.join(watch.overlaps)}: those figures may be low")

    say("\n| measure | figure |")
    say("| --- | --- |")
    rows = [
        *crypto,
        *stored.rows,
        (f"HTTP upload, {size} MiB multipart", f"{http.mb_s:.0f} MB/s"),
        ("server peak RSS during the upload", f"{peak:.0f} MiB"),
        ("server RSS idle before the upload", f"{http.rss_before_mib:.0f} MiB"),
    ]
    for name, figure in rows:
        say(f"| {name} | {figure} |")
    say("\n| goal | figure | result |")
    say("| --- | --- | --- |")
    for name, figure, met in goals:
        say(f"| {name} | {figure} | {verdict(met)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="stream size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of steps 1-3, best kept")
    parser.add_argument("--wait-minutes", type=float, default=20, help="wait for bench/chat.py")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for bench/chat.py")
    parser.add_argument("--tmp", type=Path, default=None, help="where the data directory goes")
    parser.add_argument(
        "--backend",
        choices=("filesystem", "s3"),
        default="filesystem",
        help="where the vault keeps blobs in steps 3-4: the data directory (default) or a bucket "
        "on a local moto S3 server",
    )
    args = parser.parse_args()
    if args.size_mib < 1 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be at least 1")

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    root = Path(tempfile.mkdtemp(prefix="helpline-bench-evidence-", dir=args.tmp))
    servers: list[Server | Bucket] = []
    try:
        say(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        say(f"data directory: {root}")
        asyncio.run(run(args, root, servers))
    except KeyboardInterrupt:
        say("\ninterrupted")
        sys.exit(130)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
