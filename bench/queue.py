"""Queue benchmark: simulated agents claiming and releasing cases, on PostgreSQL.

    .venv/bin/python bench/queue.py                                  # 50 agents, 200 cases, 20 s
    .venv/bin/python bench/queue.py --agents 50 --cases 200 --seconds 20 --hold-ms 50
    .venv/bin/python bench/queue.py --real-logins                    # password + TOTP logins

It starts its own `helpline serve` on 127.0.0.1 with a fresh PostgreSQL database (created and
dropped, like bench/chat.py, whose process and database helpers it uses), makes N new cases
and A agent accounts, and lets every agent loop: claim a random case of the pool through
`POST /api/staff/cases/{id}/claim` → hold it for a moment → release it through
`POST /api/staff/cases/{id}/release`. A claim of a case someone holds gets `409
already_claimed`; the agent then tries another one at once.

It measures claims per second (successful ones), the latency of every claim request (p50, p95,
p99, max), the 409 rate, and checks that no case is ever held by two agents at once: live, from
the answers (a case counts as held from the moment its claim's 200 arrives until its release
is *sent*, a window inside the real one, so any overlap seen is a real double claim), and at
the end from the audit log (`case.claim` / `case.release` in the order the log serialised them).
It prints progress while it runs, then a summary and a markdown row, and removes everything it
made, also on Ctrl-C. Figures: docs/benchmarks.md, "Triage queue".
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# This file is called like the standard library's `queue`, which asyncio imports; Python put
# this directory first on the import path. Swap it for the repository root (for bench.chat).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse
import asyncio
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp

from bench.chat import (
    HOST,
    PASSWORD,
    Server,
    Workspace,
    machine_cpu,
    open_database,
    percentile,
    proc_cpu_seconds,
    raise_nofile,
    say,
    versions,
)

CLAIM = "/api/staff/cases/{}/claim"
RELEASE = "/api/staff/cases/{}/release"


# ---------------------------------------------------------------- setup


def cheap_argon2() -> None:
    """In this process only: the cases' passphrases and the agents' passwords are hashed at a
    tiny Argon2 cost (the defaults take ~0.25 s each here). The server keeps its own setting
    and verifies whatever parameters a hash names."""
    from argon2 import PasswordHasher

    from helpline.cases import receipts
    from helpline.staff import accounts

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    receipts.passphrase_hasher = cheap
    accounts.password_hasher = cheap


async def create_cases(database_url: str, count: int) -> list[str]:
    """`count` new chat cases (waiting in the queue), made with the app's own `start_chat`."""
    from helpline.cases.service import start_chat
    from helpline.core.clock import SystemClock

    db = open_database(database_url)
    ids: list[str] = []
    try:
        while len(ids) < count:
            async with db.transaction() as session:
                for _ in range(min(100, count - len(ids))):
                    receipt = await start_chat(session, SystemClock(), language="nl", topic=None)
                    ids.append(receipt.case.id)
    finally:
        await db.dispose()
    return ids


@dataclass
class Agent:
    index: int
    username: str
    staff_id: str
    http: httpx.AsyncClient
    csrf: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, "Origin": str(self.http.base_url).rstrip("/")}


async def create_agents(
    database_url: str, server: Server, count: int, *, real_logins: bool
) -> list[Agent]:
    """Agent accounts, each with a complete staff session: opened in the database with the
    app's own `open_session` (default), or by logging in over HTTP with password + TOTP
    enrolment (`--real-logins`; staff logins are limited to 30/minute, so 50 take ~2 minutes)."""
    from helpline.core.clock import SystemClock
    from helpline.staff.accounts import create_staff
    from helpline.staff.auth import COOKIE_PLAIN, open_session
    from helpline.staff.models import LoginStage, Role

    db = open_database(database_url)
    agents: list[Agent] = []
    try:
        async with db.transaction() as session:
            for index in range(count):
                username = f"queue-agent-{index:03d}"
                staff = await create_staff(
                    session, SystemClock(), username=username, password=PASSWORD, role=Role.agent
                )
                http = httpx.AsyncClient(
                    base_url=server.url,
                    timeout=60,
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
                )
                agent = Agent(index, username, staff.id, http)
                if not real_logins:
                    token, row = await open_session(session, SystemClock(), staff, LoginStage.done)
                    # the cookie of plain http (the server runs on http://127.0.0.1)
                    http.cookies.set(COOKIE_PLAIN, token, domain=HOST)
                    agent.csrf = row.csrf_token
                agents.append(agent)
    finally:
        await db.dispose()
    if real_logins:
        for agent in agents:
            await log_in(agent)
    for agent in agents:
        me = (await agent.http.get("/api/staff/me")).json()
        if me.get("stage") != "done" or me.get("id") != agent.staff_id:
            raise RuntimeError(f"{agent.username} is not logged in: {me}")
        agent.csrf = me["csrf_token"]
    return agents


async def log_in(agent: Agent) -> None:
    """Password, then TOTP enrolment, as the console does; waits out the login rate limit."""
    origin = {"Origin": str(agent.http.base_url).rstrip("/")}
    while True:
        answer = await agent.http.post(
            "/api/staff/login",
            json={"username": agent.username, "password": PASSWORD},
            headers=origin,
        )
        if answer.status_code != 429:
            break
        wait = float(answer.headers.get("retry-after", "5"))
        say(f"  staff logins rate-limited; waiting {wait:.0f} s ({agent.index} logged in)")
        await asyncio.sleep(wait)
    answer.raise_for_status()
    secret = (await agent.http.get("/api/staff/totp/enrolment")).json()["secret"]
    csrf = (await agent.http.get("/api/staff/me")).json()["csrf_token"]
    enrolled = await agent.http.post(
        "/api/staff/totp/enrol",
        json={"code": pyotp.TOTP(secret).now()},
        headers={**origin, "X-CSRF-Token": csrf},
    )
    enrolled.raise_for_status()


# ---------------------------------------------------------------- the load


@dataclass
class Tally:
    """Everything the agents saw. Times are perf_counter() seconds in this one process."""

    claim_ok: list[tuple[float, float]] = field(default_factory=list)  # (done at, latency)
    claim_taken: list[tuple[float, float]] = field(default_factory=list)  # 409 already_claimed
    release_ok: list[float] = field(default_factory=list)  # latencies
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    holders: dict[str, int] = field(default_factory=dict)  # case -> agent index, right now
    double_claims: list[str] = field(default_factory=list)
    held_at_most: int = 0
    window_end: float = float("inf")  # claims answered later count for the checks only

    def error(self, what: str, answer: httpx.Response | BaseException) -> None:
        if isinstance(answer, httpx.Response):
            key = f"{what} {answer.status_code}"
            sample = f"{key}: {answer.text[:200]}"
        else:
            key = f"{what} {type(answer).__name__}"
            sample = f"{key}: {answer!r}"
        self.errors[key] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(sample)


async def agent_loop(
    agent: Agent,
    cases: list[str],
    tally: Tally,
    stop: asyncio.Event,
    args: argparse.Namespace,
    rng: random.Random,
) -> None:
    hold = args.hold_ms / 1000
    while not stop.is_set():
        case_id = rng.choice(cases)
        started = time.perf_counter()
        try:
            answer = await agent.http.post(CLAIM.format(case_id), headers=agent.headers)
        except httpx.HTTPError as exc:
            tally.error("claim", exc)
            continue
        done = time.perf_counter()
        if answer.status_code == 409 and answer.json()["error"]["code"] == "already_claimed":
            tally.claim_taken.append((done, done - started))
            if args.think_ms:
                await asyncio.sleep(args.think_ms / 1000)
            continue
        if answer.status_code != 200:
            tally.error("claim", answer)
            continue
        tally.claim_ok.append((done, done - started))
        if case_id in tally.holders:  # someone's release was not even sent yet
            tally.double_claims.append(
                f"case {case_id}: agent {agent.index} got it while agent "
                f"{tally.holders[case_id]} held it"
            )
        tally.holders[case_id] = agent.index
        tally.held_at_most = max(tally.held_at_most, len(tally.holders))
        await asyncio.sleep(rng.uniform(0.5 * hold, 1.5 * hold))
        # from here on the case may be someone else's as soon as the server commits
        if tally.holders.get(case_id) == agent.index:
            del tally.holders[case_id]
        started = time.perf_counter()
        try:
            released = await agent.http.post(RELEASE.format(case_id), headers=agent.headers)
        except httpx.HTTPError as exc:
            tally.error("release", exc)
            continue
        if released.status_code == 200:
            tally.release_ok.append(time.perf_counter() - started)
        else:
            tally.error("release", released)


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on the machine (all databases, also other people's)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] == "postgres":
            try:
                total += proc_cpu_seconds(int(entry.name))
            except (OSError, ValueError):
                pass
    return total


@dataclass
class Usage:
    """CPU (100 % = one core) over a window: server, this client, PostgreSQL, the machine."""

    wall: float = 0.0
    server: float = 0.0
    client: float = 0.0
    postgres: float = 0.0
    machine: float = 0.0  # % of all cores busy
    steal: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def others(self) -> float:
        """Cores busy with anything but the server, this client and PostgreSQL."""
        cores = os.cpu_count() or 1
        return max(0.0, self.machine * cores - self.server - self.client - self.postgres) / 100


class Meter:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.usage = Usage(load_before=os.getloadavg())
        self.wall = time.perf_counter()
        self.cpu = (server.cpu_seconds(), time.process_time(), postgres_cpu_seconds())
        self.machine = machine_cpu()

    def stop(self) -> Usage:
        u = self.usage
        u.wall = time.perf_counter() - self.wall
        server, client, postgres = (
            self.server.cpu_seconds(),
            time.process_time(),
            postgres_cpu_seconds(),
        )
        u.server = (server - self.cpu[0]) / u.wall * 100
        u.client = (client - self.cpu[1]) / u.wall * 100
        u.postgres = (postgres - self.cpu[2]) / u.wall * 100
        busy, steal, total = machine_cpu()
        span = max(1, total - self.machine[2])
        u.machine = (busy - self.machine[0]) / span * 100
        u.steal = (steal - self.machine[1]) / span * 100
        u.load_after = os.getloadavg()
        return u


async def progress(tally: Tally, started: float, stop: asyncio.Event, every: float) -> None:
    shown_ok = shown_taken = 0
    last = started
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
        now = time.perf_counter()
        ok, taken = len(tally.claim_ok), len(tally.claim_taken)
        window = sorted(
            x[1] * 1000 for x in tally.claim_ok[shown_ok:] + tally.claim_taken[shown_taken:]
        )
        attempts = ok - shown_ok + taken - shown_taken
        say(
            f"  {now - started:5.1f} s  claims {ok:6d} ({(ok - shown_ok) / (now - last):6.1f}/s)"
            f"  409 {100 * (taken - shown_taken) / max(1, attempts):4.1f} %"
            f"  claim p50 {percentile(window, 0.5):6.1f} ms p99 {percentile(window, 0.99):6.1f} ms"
            f"  held {len(tally.holders):3d}  errors {sum(tally.errors.values())}"
            f"  double {len(tally.double_claims)}  load {os.getloadavg()[0]:.1f}"
        )
        shown_ok, shown_taken, last = ok, taken, now


# ---------------------------------------------------------------- the audit log's view


@dataclass
class AuditCheck:
    claims: int = 0
    releases: int = 0
    double_claims: list[str] = field(default_factory=list)
    strange_releases: list[str] = field(default_factory=list)
    still_assigned: int = 0
    chain_problems: list[str] = field(default_factory=list)


async def check_audit(database_url: str, cases: list[str]) -> AuditCheck:
    """Replay `case.claim` and `case.release` of the pool's cases in log order (writers of the
    log take its head row in turn, so its order is the order they committed)."""
    from sqlalchemy import select
    from sqlmodel import col

    from helpline.cases.models import Case
    from helpline.core.audit import verify
    from helpline.core.models import AuditEntry

    db = open_database(database_url)
    result = AuditCheck()
    pool = {f"case:{c}" for c in cases}
    holder: dict[str, str] = {}
    try:
        async with db.transaction() as session:
            lines = (
                await session.stream_scalars(
                    select(AuditEntry)
                    .where(col(AuditEntry.action).in_(["case.claim", "case.release"]))
                    .order_by(col(AuditEntry.seq))
                    .execution_options(yield_per=2000)
                )
            ).partitions()
            async for batch in lines:
                for line in batch:
                    if line.target not in pool:
                        continue
                    target = line.target
                    if line.action == "case.claim":
                        result.claims += 1
                        if target in holder:
                            result.double_claims.append(
                                f"line {line.seq}: {line.actor} claimed {target}, "
                                f"held by {holder[target]}"
                            )
                        holder[target] = line.actor
                    else:
                        result.releases += 1
                        if holder.pop(target, None) is None:
                            result.strange_releases.append(f"line {line.seq}: {target}")
            assigned = await session.execute(
                select(col(Case.id)).where(
                    col(Case.id).in_(cases), col(Case.assigned_staff_id).is_not(None)
                )
            )
            result.still_assigned = len(assigned.all())
            result.chain_problems = [str(p) for p in await verify(session)]
    finally:
        await db.dispose()
    return result


# ---------------------------------------------------------------- run and report


@dataclass
class Result:
    agents: int
    cases: int
    seconds: float
    tally: Tally
    usage: Usage
    audit: AuditCheck
    setup_seconds: float
    warm: Tally  # the warm-up's answers: its claims are in the audit log too

    def _in_window(self, answers: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [x for x in answers if x[0] <= self.tally.window_end]

    @property
    def claimed(self) -> int:
        """Successful claims answered within the timed window."""
        return len(self._in_window(self.tally.claim_ok))

    @property
    def taken(self) -> int:
        return len(self._in_window(self.tally.claim_taken))

    @property
    def attempts(self) -> int:
        return self.claimed + self.taken

    @property
    def claims_per_second(self) -> float:
        return self.claimed / self.usage.wall

    @property
    def conflict_rate(self) -> float:
        return self.taken / max(1, self.attempts) * 100

    def latencies(self, which: str = "all") -> list[float]:
        """Claim latencies in ms within the timed window: all, only 200 or only 409."""
        chosen = {
            "all": self.tally.claim_ok + self.tally.claim_taken,
            "ok": self.tally.claim_ok,
            "taken": self.tally.claim_taken,
        }[which]
        return sorted(x[1] * 1000 for x in self._in_window(chosen))

    @property
    def server_ms_per_request(self) -> float:
        """The server's CPU time per claim, 409 or release answered in the timed window."""
        releases = len(self.tally.release_ok) * self.claimed / max(1, len(self.tally.claim_ok))
        requests = self.attempts + releases
        return self.usage.server / 100 * self.usage.wall / max(1.0, requests) * 1000

    @property
    def double_claims(self) -> int:
        return len(self.tally.double_claims) + len(self.audit.double_claims)

    @property
    def consistent(self) -> bool:
        """The audit log tells the same story as the answers, and nothing is left claimed."""
        a, t = self.audit, self.tally
        return (
            a.claims == len(t.claim_ok) + len(self.warm.claim_ok)
            and a.releases == len(t.release_ok) + len(self.warm.release_ok)
            and not a.strange_releases
            and not a.chain_problems
            and a.still_assigned == 0
        )


async def run(args: argparse.Namespace, work: Workspace) -> Result:
    setup_started = time.perf_counter()
    await work.prepare()
    say(
        f"database: {args.database}"
        + (f" ({work.pg_database}, dropped afterwards)" if work.pg_database else "")
    )
    await asyncio.to_thread(work.migrate)
    [server] = await work.start_servers()
    say(f"{server.name}: {server.url} (pid {server.pid})")
    cheap_argon2()
    cases = await create_cases(work.database_url, args.cases)
    say(f"  {len(cases)} cases waiting in the queue")
    agents = await create_agents(
        work.database_url, server, args.agents, real_logins=args.real_logins
    )
    how = "password + TOTP over HTTP" if args.real_logins else "sessions opened by open_session"
    say(f"  {len(agents)} agents logged in ({how})")
    setup_seconds = time.perf_counter() - setup_started

    tally = Tally()
    stop = asyncio.Event()
    rng = random.Random(args.seed)
    tasks: list[asyncio.Task[None]] = []

    def start(tally: Tally, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        started = [
            asyncio.create_task(
                agent_loop(a, cases, tally, stop, args, random.Random(rng.random()))
            )
            for a in agents
        ]
        tasks.extend(started)
        return started

    try:
        # warm-up, not counted: the first requests pay for connections and caches
        warm = Tally()
        warm_stop = asyncio.Event()
        warm_tasks = start(warm, warm_stop)
        await asyncio.sleep(args.warmup)
        warm_stop.set()
        await asyncio.gather(*warm_tasks)
        if warm.errors or warm.double_claims:
            raise RuntimeError(f"warm-up went wrong: {dict(warm.errors)} {warm.error_samples}")
        say(f"  warm-up: {len(warm.claim_ok)} claims in {args.warmup:.0f} s")
        server.check_alive()

        say(
            f"\n== {args.agents} agents, {args.cases} cases, {args.seconds:.0f} s; hold "
            f"{args.hold_ms:.0f} ms ±50 %; load average {os.getloadavg()[0]:.1f}"
        )
        meter = Meter(server)
        started = time.perf_counter()
        reporter = asyncio.create_task(progress(tally, started, stop, args.every))
        tasks.append(reporter)
        loops = start(tally, stop)
        await asyncio.sleep(args.seconds)
        stop.set()  # each agent releases what it holds, then stops
        usage = meter.stop()
        tally.window_end = time.perf_counter()
        await asyncio.gather(*loops)
        await reporter
        server.check_alive()
    finally:
        for task in tasks:  # only on an error or Ctrl-C are any still running
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for agent in agents:
            await agent.http.aclose()
    audit = await check_audit(work.database_url, cases)
    return Result(args.agents, args.cases, args.seconds, tally, usage, audit, setup_seconds, warm)


def report(args: argparse.Namespace, r: Result) -> None:
    t, u, a = r.tally, r.usage, r.audit
    every, ok, taken = r.latencies("all"), r.latencies("ok"), r.latencies("taken")

    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q):.1f}"

    say("\n" + "=" * 72)
    say(f"SUMMARY  {args.database}, 1 instance; {versions(args)}")
    say(
        f"{r.agents} agents, {r.cases} cases, {u.wall:.1f} s, hold {args.hold_ms:.0f} ms ±50 %"
        f" (setup {r.setup_seconds:.0f} s)"
    )
    rows = [
        ("claims (200)", f"{r.claimed}  = {r.claims_per_second:.1f}/s"),
        (
            "claim attempts",
            f"{r.attempts}  = {r.attempts / u.wall:.1f}/s; 409 already_claimed: "
            f"{r.taken} ({r.conflict_rate:.1f} %)",
        ),
        (
            "claim latency, all (ms)",
            f"p50 {ms(every, 0.5)}  p95 {ms(every, 0.95)}  p99 {ms(every, 0.99)}"
            f"  max {ms(every, 1.0)}",
        ),
        ("  only 200 (ms)", f"p50 {ms(ok, 0.5)}  p95 {ms(ok, 0.95)}  p99 {ms(ok, 0.99)}"),
        ("  only 409 (ms)", f"p50 {ms(taken, 0.5)}  p95 {ms(taken, 0.95)}  p99 {ms(taken, 0.99)}"),
        (
            "release latency (ms)",
            f"p50 {ms(sorted(x * 1000 for x in t.release_ok), 0.5)}"
            f"  p99 {ms(sorted(x * 1000 for x in t.release_ok), 0.99)} ({len(t.release_ok)})",
        ),
        ("cases held at once, max", str(t.held_at_most)),
        ("errors", ", ".join(f"{k}: {n}" for k, n in t.errors.items()) or "0"),
        ("double claims, answers", str(len(t.double_claims))),
        (
            "double claims, audit log",
            f"{len(a.double_claims)} ({a.claims} case.claim, {a.releases} case.release, "
            f"warm-up included; {'matches' if r.consistent else 'DOES NOT MATCH'} the answers; "
            f"{a.still_assigned} left assigned; chain "
            f"{'intact' if not a.chain_problems else 'BROKEN'})",
        ),
        (
            "CPU (100 % = 1 core)",
            f"server {u.server:.0f} %, client {u.client:.0f} %, PostgreSQL (all databases) "
            f"{u.postgres:.0f} %; machine {u.machine:.0f} % of {os.cpu_count()} cores busy, "
            f"{u.steal:.0f} % stolen; others ≈ {u.others:.2f} cores",
        ),
        (
            "server CPU per request",
            f"{r.server_ms_per_request:.1f} ms (claims, 409s and releases, within the window)",
        ),
        (
            "load average",
            f"{', '.join(f'{x:.1f}' for x in u.load_before)} before, "
            f"{', '.join(f'{x:.1f}' for x in u.load_after)} after",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        say(f"{key:<{width}}  {value}")
    for sample in t.error_samples:
        say(f"  error: {sample}")
    for line in (t.double_claims + a.double_claims + a.strange_releases + a.chain_problems)[:10]:
        say(f"  !! {line}")
    verdict = r.double_claims == 0 and r.consistent and not t.errors
    say(f"zero double claims: {'yes' if verdict else 'NO'}")
    say("=" * 72)
    say("\nmarkdown:")
    say(
        "| agents | cases | s | claims/s | attempts/s | 409 | p50 | p95 | p99 | max (ms) "
        "| double claims | errors | server / PostgreSQL / client CPU | others (cores) "
        "| load before |"
    )
    say("|" + " --- |" * 15)
    cells = [
        str(r.agents),
        str(r.cases),
        f"{u.wall:.0f}",
        f"{r.claims_per_second:.1f}",
        f"{r.attempts / u.wall:.1f}",
        f"{r.conflict_rate:.1f} %",
        ms(every, 0.5),
        ms(every, 0.95),
        ms(every, 0.99),
        ms(every, 1.0),
        str(r.double_claims),
        str(sum(t.errors.values())),
        f"{u.server:.0f} / {u.postgres:.0f} / {u.client:.0f} %",
        f"{u.others:.2f}",
        f"{u.load_before[0]:.1f}",
    ]
    say("| " + " | ".join(cells) + " |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Queue benchmark: agents claiming and releasing cases (127.0.0.1 only)."
    )
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--cases", type=int, default=200, help="the pool of waiting cases")
    parser.add_argument("--seconds", type=float, default=20, help="how long the load runs")
    parser.add_argument("--hold-ms", type=float, default=50, help="how long a claim is held")
    parser.add_argument(
        "--think-ms", type=float, default=0, help="pause after a 409 before the next try"
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds of uncounted load")
    parser.add_argument("--every", type=float, default=2, help="seconds between progress lines")
    parser.add_argument("--seed", type=int, default=None, help="for the agents' random choices")
    parser.add_argument(
        "--real-logins",
        action="store_true",
        help="log the agents in with password + TOTP over HTTP (rate-limited: slow)",
    )
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--postgres",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/",
        help="PostgreSQL server on which a fresh database is created and dropped",
    )
    parser.add_argument(
        "--profile", action="store_true", help="run the server under cProfile; print the top"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.cases < 1 or args.seconds <= 0:
        parser.error("--agents, --cases and --seconds must be positive")
    # what bench.chat's Workspace and Server expect
    args.instances, args.redis = 1, ""
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile()
    work = Workspace(args)

    def terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    code = 0
    try:
        result = asyncio.run(run(args, work))
        report(args, result)
        if result.double_claims or not result.consistent:
            code = 2
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
