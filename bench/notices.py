"""Notice benchmark: DSA notices built, signed and delivered per second, through the outbox.

    .venv/bin/python bench/notices.py                          # 500 notices, PostgreSQL
    .venv/bin/python bench/notices.py --notices 2000 --urls 3
    .venv/bin/python bench/notices.py --phased                 # build first, then deliver
    .venv/bin/python bench/notices.py --database sqlite

What one notice costs, end to end, as in production: staff create a draft from a case
(`builder.create_notice`: URLs and explanation encrypted under the notice's own key) and queue
it (`delivery.queue_notice`: the JSON document and the HTML page built, canonicalised and
signed with Ed25519, both stored encrypted, the URLs moved to `queued` with their history
rows, a portal token, the audit line, the outbox entry) in one transaction per notice; the
app's real `OutboxWorker` claims the entry and runs the real `takedown.notice` handler
(`delivery.deliver_notice`): it decrypts and verifies nothing it need not, builds the e-mail
(text, the signed HTML, the signed JSON and its signature as attachments) and sends it with
aiosmtplib to a local aiosmtpd sink, then marks the notice `sent` and starts its clock.

The sink runs in its own process (this file with `--sink`), so its CPU is not the app's; it
writes one line per mail it accepts. The figure is **notices per second from the first
draft to the last notice marked sent**, with `--producers` staff creating notices at once and
the worker delivering while they do (`--phased` builds all first, then delivers, and gives
each stage's rate). At the end it checks that the sink got every notice exactly once (by its
Message-ID and `X-Helpline-Notice`), that every notice is `sent` and no outbox entry is dead.

It uses a fresh PostgreSQL database (created, migrated, dropped; or a temp SQLite file), a
temp data directory and a random master key, prints progress every 2 s, stops by itself and
removes everything it made, also on Ctrl-C. Figures: docs/benchmarks.md, "Takedown notices".
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# run as a file: the repository root on the path (for bench.chat and helpline), this one off
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse
import asyncio
import contextlib
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from bench.chat import (
    HOST,
    Workspace,
    free_port,
    machine_cpu,
    percentile,
    proc_cpu_seconds,
    processes_cpu_seconds,
    say,
    versions,
)

PLATFORM_ADDRESS = "dsa-notices@platform.example"
HELPLINE_ADDRESS = "notices@helpline.example"

# ---------------------------------------------------------------- the SMTP sink (own process)


def run_sink(port: int, log_path: Path) -> None:
    """An aiosmtpd server on 127.0.0.1:`port` that accepts everything and writes one line per
    mail: its Message-ID, its X-Helpline-Notice, its recipients and its size."""
    from aiosmtpd.smtp import SMTP

    class Handler:
        def __init__(self, log: Any) -> None:
            self.log = log

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mail = message_from_bytes(envelope.original_content, policy=default_policy)
            line = "\t".join(
                [
                    str(mail.get("Message-ID", "")),
                    str(mail.get("X-Helpline-Notice", "")),
                    ",".join(envelope.rcpt_tos),
                    str(len(envelope.original_content)),
                ]
            )
            self.log.write(line + "\n")
            self.log.flush()
            return "250 OK"

    async def serve() -> None:
        with open(log_path, "a") as log:
            handler = Handler(log)
            loop = asyncio.get_running_loop()
            server = await loop.create_server(
                lambda: SMTP(handler, hostname="sink.test", loop=loop, data_size_limit=0),
                HOST,
                port,
            )
            print("ready", flush=True)
            stop = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            await stop.wait()
            server.close()
            await server.wait_closed()

    asyncio.run(serve())


@dataclass
class Sink:
    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @classmethod
    def start(cls, tmp: Path) -> Sink:
        port = free_port()
        log_path = tmp / "sink.tsv"
        log_path.touch()
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--sink", str(port), str(log_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            raise RuntimeError("the SMTP sink did not start")
        return cls(process, port, log_path)

    def received(self) -> list[list[str]]:
        return [line.split("\t") for line in self.log_path.read_text().splitlines() if line]

    def cpu(self) -> float:
        try:
            return proc_cpu_seconds(self.process.pid)
        except OSError:
            return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ---------------------------------------------------------------- the helpline, in process


def cheap_argon2() -> None:
    """The cases' passphrases and the staff password are never used: hash them cheaply."""
    from argon2 import PasswordHasher

    from helpline.cases import receipts
    from helpline.staff import accounts

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    receipts.passphrase_hasher = cheap
    accounts.password_hasher = cheap


def settings_for(work: Workspace, sink: Sink) -> Any:
    from helpline.core.config import Settings

    assert work.tmp is not None
    return Settings(
        data_dir=work.tmp / "data",
        database_url=work.database_url,
        master_key=work.master_key,
        base_url="https://helpline.example",
        log_level="WARNING",
        run_workers=False,  # the bench starts the worker itself, when it wants it
        smtp_out_host=HOST,
        smtp_out_port=sink.port,
        smtp_out_security="none",
        mail_from=HELPLINE_ADDRESS,
        inbound_addresses=HELPLINE_ADDRESS,
    )


@dataclass
class Setup:
    platform_id: str
    staff_id: str
    case_ids: list[str]


async def prepare_data(services: Any, args: argparse.Namespace) -> Setup:
    """One e-mail platform, one staff member, and the cases the notices come from."""
    from helpline.cases.service import start_chat
    from helpline.staff.accounts import create_staff
    from helpline.staff.models import Role
    from helpline.takedown.platforms import PlatformFields, create_platform

    async with services.db.transaction() as session:
        platform = await create_platform(
            session,
            services.clock,
            services.settings,
            PlatformFields(
                name="Bench Video",
                slug="bench-video",
                contact_email=PLATFORM_ADDRESS,
                delivery="email",
                languages=["en", "nl"],
            ),
        )
        staff = await create_staff(
            session,
            services.clock,
            username="bench",
            password="a long benchmark password",
            role=Role.agent,
        )
        case_ids = []
        for _ in range(max(1, args.notices // args.notices_per_case)):
            receipt = await start_chat(session, services.clock, language="nl", topic=None)
            case_ids.append(receipt.case.id)
    return Setup(platform.id, staff.id, case_ids)


async def make_notice(services: Any, setup: Setup, index: int, urls: int) -> str:
    """One staff request: a draft from a case, frozen, signed and queued. Returns its id."""
    from helpline.cases.models import Case
    from helpline.takedown.builder import NoticeRequest, UrlChoice, create_notice
    from helpline.takedown.delivery import queue_notice
    from helpline.takedown.models import Platform

    case_id = setup.case_ids[index % len(setup.case_ids)]
    async with services.db.transaction() as session:
        case = await session.get(Case, case_id)
        platform = await session.get(Platform, setup.platform_id)
        assert case is not None and platform is not None
        notice = await create_notice(
            session,
            services,
            case,
            staff_id=setup.staff_id,
            request=NoticeRequest(
                platform_id=platform.id,
                category="sextortion",
                urls=[
                    UrlChoice(
                        url=f"https://video.example/watch/{index}-{n}?t=bench",
                        content_type="CONTENT_TYPE_VIDEO",
                    )
                    for n in range(urls)
                ],
            ),
        )
        await queue_notice(session, services, notice, platform, actor=f"staff:{setup.staff_id}")
        notice_id: str = notice.id
    return notice_id


# ---------------------------------------------------------------- counting


@dataclass
class Tally:
    queued: int = 0
    statements: int = 0  # SQL statements the app sent in the timed window
    build_cpu: float = 0.0  # this process's CPU until the last notice was queued
    build_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str = ""


async def count_sent(services: Any) -> int:
    from sqlalchemy import func, select
    from sqlmodel import col

    from helpline.takedown.models import Notice

    async with services.db.transaction() as session:
        return int(
            (
                await session.execute(
                    select(func.count()).select_from(Notice).where(col(Notice.status) == "sent")
                )
            ).scalar_one()
        )


async def producers(services: Any, setup: Setup, args: argparse.Namespace, tally: Tally) -> None:
    """`--producers` staff members creating and queueing notices until there are N."""
    next_index = 0

    async def producer() -> None:
        nonlocal next_index
        while next_index < args.notices:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                await make_notice(services, setup, index, args.urls)
            except Exception as exc:  # counted and shown; the check at the end fails
                tally.errors[type(exc).__name__] += 1
                tally.first_error = tally.first_error or repr(exc)
                continue
            tally.build_ms.append((time.perf_counter() - started) * 1000)
            tally.queued += 1
            services.outbox.wake()

    await asyncio.gather(*(producer() for _ in range(args.producers)))


@dataclass
class Meter:
    """CPU over a window: this process (the app: building and the worker), the sink,
    PostgreSQL (every postgres process on the machine), the whole machine."""

    sink: Sink
    started: float = 0.0
    own: float = 0.0
    sink_cpu: float = 0.0
    postgres: float = 0.0
    machine: tuple[int, int, int] = (0, 0, 0)

    def start(self) -> None:
        self.started = time.perf_counter()
        self.own = time.process_time()
        self.sink_cpu = self.sink.cpu()
        self.postgres = processes_cpu_seconds(("postgres",))
        self.machine = machine_cpu()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.started
        busy, steal, total = machine_cpu()
        b0, s0, t0 = self.machine
        cores = os.cpu_count() or 1
        machine_cores = (busy - b0) / max(1, total - t0) * cores
        result = {
            "wall": wall,
            "app": time.process_time() - self.own,
            "sink": self.sink.cpu() - self.sink_cpu,
            "postgres": processes_cpu_seconds(("postgres",)) - self.postgres,
            "machine_cores": machine_cores,
            "steal": (steal - s0) / max(1, total - t0) * cores,
        }
        result["others_cores"] = max(
            0.0, machine_cores - (result["app"] + result["sink"] + result["postgres"]) / wall
        )
        return result


async def progress(
    services: Any, tally: Tally, started: float, stop: asyncio.Event, every: float, baseline: int
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        sent = await count_sent(services) - baseline
        elapsed = time.perf_counter() - started
        say(
            f"  {elapsed:6.1f} s  queued {tally.queued:6d}  sent {sent:6d}  "
            f"{sent / elapsed:7.1f} notices/s"
            + (f"  errors {dict(tally.errors)}" if tally.errors else "")
        )


async def wait_all_sent(services: Any, target: int, deadline: float) -> int:
    while True:
        sent = await count_sent(services)
        if sent >= target or time.perf_counter() > deadline:
            return sent
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- the run


@dataclass
class Result:
    notices: int
    urls: int
    wall: float
    build_wall: float
    deliver_wall: float | None
    sent: int
    tally: Tally
    usage: dict[str, float]
    received: int
    distinct: int
    wrong: int
    dead: int
    pending: int
    mail_bytes: list[int]

    @property
    def rate(self) -> float:
        return self.sent / self.wall if self.wall else 0.0

    @property
    def consistent(self) -> bool:
        return (
            self.sent == self.notices
            and self.received == self.notices
            and self.distinct == self.notices
            and not self.wrong
            and not self.dead
            and not self.pending
            and not self.tally.errors
        )


async def outbox_counts(services: Any) -> Counter[str]:
    from sqlalchemy import func, select
    from sqlmodel import col

    from helpline.core.models import OutboxEntry

    async with services.db.transaction() as session:
        rows = await session.execute(
            select(col(OutboxEntry.status), func.count()).group_by(col(OutboxEntry.status))
        )
        return Counter({status: int(count) for status, count in rows.all()})


async def references_of_notices(services: Any) -> set[str]:
    from sqlalchemy import select
    from sqlmodel import col

    from helpline.takedown.models import Notice

    async with services.db.transaction() as session:
        return set((await session.execute(select(col(Notice.reference)))).scalars().all())


async def run(args: argparse.Namespace, work: Workspace) -> Result:
    from sqlalchemy import event

    from helpline.app import running_services
    from helpline.core.clock import SystemClock
    from helpline.core.crypto import MasterKeys
    from helpline.models import import_all_models
    from helpline.takedown.delivery import register_delivery

    import_all_models()
    await work.prepare()
    say(
        f"database: {args.database}"
        + (f" ({work.pg_database}, dropped afterwards)" if work.pg_database else "")
    )
    await asyncio.to_thread(work.migrate)
    assert work.tmp is not None
    sink = Sink.start(work.tmp)
    work.sink = sink  # type: ignore[attr-defined]  # so cleanup() stops it
    say(f"SMTP sink: {HOST}:{sink.port} (pid {sink.process.pid})")
    settings = settings_for(work, sink)
    master = MasterKeys.from_settings(settings)
    cheap_argon2()
    async with running_services(settings, master, SystemClock(), workers=False) as services:
        register_delivery(services)  # a no-op once the app registers the takedown handlers
        setup = await prepare_data(services, args)
        say(
            f"  1 platform (e-mail), {len(setup.case_ids)} cases, {args.notices} notices of "
            f"{args.urls} URL(s), {args.producers} producer(s), {args.workers} worker(s) "
            f"of batch {services.outbox.batch_size}"
        )
        # warm-up, not counted: first connections, first signatures, the sink's first mail
        warm_notices = max(0, args.warmup)
        for index in range(warm_notices):
            await make_notice(services, setup, 10_000_000 + index, args.urls)
        while await services.outbox.run_once():
            pass
        if warm_notices:
            say(f"  warm-up: {warm_notices} notices built and delivered (not counted)")
        baseline_sent = await count_sent(services)
        baseline_received = len(sink.received())

        workers: list[asyncio.Task[None]] = []
        tally = Tally()
        stop = asyncio.Event()
        meter = Meter(sink)
        say(f"\n== {args.notices} notices; load average {os.getloadavg()[0]:.1f}")

        def count_statement(*_args: Any) -> None:
            tally.statements += 1

        event.listen(services.db.engine.sync_engine, "before_cursor_execute", count_statement)
        meter.start()
        started = time.perf_counter()
        reporter = asyncio.create_task(
            progress(services, tally, started, stop, args.every, baseline_sent)
        )
        deliver_wall: float | None = None
        try:
            if not args.phased:
                workers = [
                    asyncio.create_task(services.outbox.run_forever()) for _ in range(args.workers)
                ]
            await producers(services, setup, args, tally)
            build_wall = time.perf_counter() - started
            tally.build_cpu = time.process_time() - meter.own
            if args.phased:
                delivering = time.perf_counter()
                workers = [
                    asyncio.create_task(services.outbox.run_forever()) for _ in range(args.workers)
                ]
            deadline = time.perf_counter() + args.timeout
            sent = await wait_all_sent(services, baseline_sent + tally.queued, deadline)
            wall = time.perf_counter() - started
            if args.phased:
                deliver_wall = time.perf_counter() - delivering
            usage = meter.stop()
        finally:
            stop.set()
            event.remove(services.db.engine.sync_engine, "before_cursor_execute", count_statement)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, reporter, return_exceptions=True)
        sent -= baseline_sent
        counts = await outbox_counts(services)
        references = await references_of_notices(services)
    received = sink.received()[baseline_received:]
    message_ids = Counter(line[0] for line in received)
    wrong = sum(1 for line in received if line[1] not in references or line[2] != PLATFORM_ADDRESS)
    return Result(
        notices=args.notices,
        urls=args.urls,
        wall=wall,
        build_wall=build_wall,
        deliver_wall=deliver_wall,
        sent=sent,
        tally=tally,
        usage=usage,
        received=len(received),
        distinct=len(message_ids),
        wrong=wrong,
        dead=counts.get("dead", 0),
        pending=counts.get("pending", 0) + counts.get("delivering", 0),
        mail_bytes=sorted(int(line[3]) for line in received),
    )


def report(args: argparse.Namespace, r: Result) -> None:
    u = r.usage
    builds = sorted(r.tally.build_ms)
    say("\n" + "=" * 72)
    say(f"{versions(args)}; database {args.database}")
    say(
        f"notices: {r.sent} of {r.notices} sent in {r.wall:.2f} s "
        f"→ **{r.rate:.1f} notices/s** built, signed and delivered ({r.urls} URL(s) each)"
    )
    say(
        f"  build + sign + queue: {r.tally.queued} in {r.build_wall:.2f} s "
        f"({r.tally.queued / r.build_wall:.1f}/s with {args.producers} producer(s)); per "
        f"notice p50 {percentile(builds, 0.5):.1f} ms, p99 {percentile(builds, 0.99):.1f} ms"
    )
    if r.deliver_wall is not None:
        per_build = r.tally.build_cpu / max(1, r.tally.queued) * 1000
        per_delivery = (u["app"] - r.tally.build_cpu) / max(1, r.sent) * 1000
        say(f"  delivery of the backlog: {r.sent} in {r.deliver_wall:.2f} s "
            f"({r.sent / r.deliver_wall:.1f}/s)")  # fmt: skip
        say(f"  app CPU per notice: build + sign + queue {per_build:.1f} ms, "
            f"delivery {per_delivery:.1f} ms")  # fmt: skip
    say(f"  SQL statements: {r.tally.statements / max(1, r.sent):.1f} per notice (build + deliver)")
    if r.mail_bytes:
        say(f"  mail size: median {r.mail_bytes[len(r.mail_bytes) // 2] / 1024:.1f} KiB")
    say(
        f"  CPU: app (this process) {u['app']:.2f} s = {u['app'] / max(1, r.sent) * 1000:.1f} "
        f"ms/notice; PostgreSQL {u['postgres']:.2f} s; sink {u['sink']:.2f} s; "
        f"other load {u['others_cores']:.2f} cores; machine {u['machine_cores']:.2f} of "
        f"{os.cpu_count()} cores"
    )
    say(
        f"  check: sink got {r.received} mails, {r.distinct} distinct Message-IDs, "
        f"{r.wrong} not ours; outbox dead {r.dead}, left {r.pending}; errors "
        f"{dict(r.tally.errors) or 0}"
        + (f" ({r.tally.first_error})" if r.tally.first_error else "")
    )
    say("  " + ("OK: every notice delivered exactly once" if r.consistent else "MISMATCH"))
    say(
        "\n| notices | URLs each | producers | database | notices/s | build p50 / p99 (ms) | "
        "app CPU/notice | PostgreSQL CPU | other load |"
    )
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    say(
        f"| {r.notices} | {r.urls} | {args.producers} | {args.database} | **{r.rate:.1f}** | "
        f"{percentile(builds, 0.5):.1f} / {percentile(builds, 0.99):.1f} | "
        f"{u['app'] / max(1, r.sent) * 1000:.1f} ms | {u['postgres']:.1f} s | "
        f"{u['others_cores']:.2f} cores |"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=500, help="how many (default 500)")
    parser.add_argument("--urls", type=int, default=1, help="URLs per notice (default 1)")
    parser.add_argument(
        "--producers", type=int, default=4, help="staff creating notices at once (default 4)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="outbox worker loops, as app instances (1)"
    )
    parser.add_argument("--notices-per-case", type=int, default=5, help="(default 5)")
    parser.add_argument(
        "--phased", action="store_true", help="build all notices first, then deliver them"
    )
    parser.add_argument("--warmup", type=int, default=10, help="notices not counted (10)")
    parser.add_argument("--timeout", type=float, default=600, help="give up after (s)")
    parser.add_argument("--every", type=float, default=2.0, help="progress every (s)")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--postgres",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server where the bench may create a database",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp directory")
    args = parser.parse_args(argv)
    if args.notices < 1 or args.urls < 1 or args.producers < 1 or args.workers < 1:
        parser.error("--notices, --urls, --producers and --workers must be at least 1")
    # what bench.chat's Workspace expects
    args.instances, args.redis, args.profile = 1, "", False
    return args


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--sink"]:
        run_sink(int(arguments[1]), Path(arguments[2]))
        return 0
    args = parse_args(arguments)
    work = Workspace(args)

    def terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    code = 0
    try:
        result = asyncio.run(run(args, work))
        report(args, result)
        code = 0 if result.consistent else 2
    except KeyboardInterrupt:
        say("\ninterrupted")
        code = 130
    except Exception as exc:
        say(f"\nbenchmark failed: {exc!r}")
        if os.environ.get("BENCH_TRACEBACK"):
            import traceback

            traceback.print_exc()
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sink = getattr(work, "sink", None)
        if sink is not None:
            sink.stop()
        work.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
