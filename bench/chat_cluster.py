"""Chat through a cluster: idle connections and victim→staff delivery latency through nginx,
one instance against two (both behind nginx, with Redis).

    .venv/bin/python bench/chat_cluster.py                        # 1 then 2 instances
    .venv/bin/python bench/chat_cluster.py --instances 2 --rate 500 --seconds 10
    .venv/bin/python bench/chat_cluster.py --placement split      # victims on 0, staff on 1

Each configuration gets a fresh cluster from bench/cluster.py (its own PostgreSQL database,
Redis database, shared data directory and nginx; all removed afterwards, also on Ctrl-C).

1. Connections: N idle victim websockets opened through nginx (balanced over the instances);
   the cases are made directly with the app's `start_chat` (cheap Argon2 in this process, as
   bench/chat.py does), the count that opened, the time it took and how nginx spread them.
2. Latency: P victim/staff pairs (victims via POST /api/chat/start through nginx, staff logged
   in with password + TOTP through nginx, cases claimed). `--placement balanced` (default)
   opens every socket through nginx's balanced address, so with two instances about half of
   the pairs talk across instances (through Redis); `split` pins victims to instance 0 and
   staff to the last instance (every message crosses). Victims send at a fixed aggregate rate;
   the time from send to the staff socket receiving the `message` frame is measured with one
   clock in this process; lost and doubled deliveries are counted (they must be 0).
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# Python puts this directory first on the import path, and bench/queue.py is called like the
# standard library's `queue`, which asyncio imports: take this directory off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # for bench.chat and bench.cluster

import argparse
import asyncio
import json
import platform
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.chat import (
    Staff,
    create_cases,
    create_staff_accounts,
    open_chat,
    percentile,
    raise_nofile,
    start_victim,
)
from bench.cluster import Cluster, stop_on_signals


def instance_of(cluster: Cluster, socket: ClientConnection) -> int:
    assert socket.response is not None
    return cluster.instance_of(dict(socket.response.headers))


async def bench_connections(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    tokens = await create_cases(args, cluster.database_url, args.connections)
    sockets: list[ClientConnection] = []
    failed = 0
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def one(token: str) -> None:
        nonlocal failed
        async with gate:
            try:
                sockets.append(await open_chat(cluster.ws_url, {"token": token}, args))
            except Exception:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in tokens))
    seconds = time.perf_counter() - started
    spread = Counter(instance_of(cluster, s) for s in sockets)
    await asyncio.sleep(args.hold)
    alive = sum(1 for s in sockets if s.close_code is None)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return {
        "opened": len(sockets),
        "failed": failed,
        "alive_after_hold": alive,
        "seconds": seconds,
        "spread": dict(sorted(spread.items())),
    }


@dataclass
class Pair:
    token: str
    reference: str
    staff: Staff
    case_id: str = ""
    victim: ClientConnection | None = None
    staff_socket: ClientConnection | None = None
    crosses: bool = False


@dataclass
class Tally:
    sent: dict[str, float] = field(default_factory=dict)
    crosses: dict[str, bool] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, float] = field(default_factory=dict)
    warm: set[str] = field(default_factory=set)  # warm-up messages: awaited, not counted
    warm_seen: set[str] = field(default_factory=set)


async def read_staff(socket: ClientConnection, tally: Tally) -> None:
    with_suppress = (ConnectionClosed, asyncio.CancelledError)
    try:
        async for text in socket:
            now = time.perf_counter()
            frame = json.loads(text)
            client_id = frame.get("client_id")
            if frame.get("type") == "message" and client_id in tally.warm:
                tally.warm_seen.add(client_id)
                continue
            if frame.get("type") != "message" or client_id not in tally.sent:
                continue
            tally.received[client_id] += 1
            if tally.received[client_id] == 1:
                tally.latencies[client_id] = now - tally.sent[client_id]
    except with_suppress:
        pass


async def drain(socket: ClientConnection) -> None:
    try:
        async for _ in socket:
            pass
    except (ConnectionClosed, asyncio.CancelledError):
        pass


async def bench_latency(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    last = len(cluster.nodes) - 1
    victim_ws = cluster.pinned_url(0, "ws") if args.placement == "split" else cluster.ws_url
    staff_ws = cluster.pinned_url(last, "ws") if args.placement == "split" else cluster.ws_url
    names = await create_staff_accounts(cluster.database_url, args.staff)
    staff = [
        Staff(n, httpx.AsyncClient(base_url=cluster.url, timeout=60), cluster.url) for n in names
    ]
    tally = Tally()
    tasks: list[asyncio.Task[None]] = []
    pairs: list[Pair] = []
    async with httpx.AsyncClient(base_url=cluster.url, timeout=120) as victims_http:
        try:
            for member in staff:
                await member.log_in()
            receipts = [await start_victim(victims_http) for _ in range(args.pairs)]
            listed = (await staff[0].http.get("/api/staff/cases")).json()["cases"]
            ids = {c["reference"]: c["id"] for c in listed}
            for index, receipt in enumerate(receipts):
                pair = Pair(receipt["token"], receipt["reference"], staff[index % len(staff)])
                pair.case_id = ids[pair.reference]
                await pair.staff.claim(pair.case_id)
                pair.victim = await open_chat(victim_ws, {"token": pair.token}, args)
                pair.staff_socket = await open_chat(
                    staff_ws, {"case": pair.case_id}, args, headers=pair.staff.socket_headers()
                )
                pair.crosses = instance_of(cluster, pair.victim) != instance_of(
                    cluster, pair.staff_socket
                )
                tasks.append(asyncio.create_task(read_staff(pair.staff_socket, tally)))
                tasks.append(asyncio.create_task(drain(pair.victim)))
                pairs.append(pair)
            # warm-up, as bench/chat.py does: one message per pair, not counted (the first
            # message of a case and the first use of each pooled connection cost more)
            for pair in pairs:
                assert pair.victim is not None
                client_id = uuid.uuid4().hex
                tally.warm.add(client_id)
                frame = {"type": "send", "client_id": client_id, "text": "warm-up"}
                await pair.victim.send(json.dumps(frame))
                await asyncio.sleep(1 / min(args.rate, 200))
            deadline = time.perf_counter() + args.drain
            while len(tally.warm_seen) < len(tally.warm) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            total = int(args.rate * args.seconds)
            interval = 1 / args.rate
            started = time.perf_counter()
            for number in range(total):
                due = started + number * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pair = pairs[number % len(pairs)]
                client_id = uuid.uuid4().hex
                tally.sent[client_id] = time.perf_counter()
                tally.crosses[client_id] = pair.crosses
                assert pair.victim is not None
                frame = {"type": "send", "client_id": client_id, "text": f"bench {number}"}
                await pair.victim.send(json.dumps(frame))
            sending = time.perf_counter() - started
            deadline = time.perf_counter() + args.drain
            while len(tally.latencies) < total and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for pair in pairs:
                for socket in (pair.victim, pair.staff_socket):
                    if socket is not None:
                        await socket.close()
            for member in staff:
                await member.http.aclose()
    every = sorted(v * 1000 for v in tally.latencies.values())
    crossing = sorted(v * 1000 for k, v in tally.latencies.items() if tally.crosses[k])
    local = sorted(v * 1000 for k, v in tally.latencies.items() if not tally.crosses[k])

    def figures(values: list[float]) -> str:
        if not values:
            return "-"
        return f"p50 {percentile(values, 0.50):.1f} / p99 {percentile(values, 0.99):.1f} ms"

    return {
        "sent": len(tally.sent),
        "delivered": len(tally.latencies),
        "lost": len(tally.sent) - len(tally.latencies),
        "doubled": sum(1 for c in tally.received.values() if c > 1),
        "rate": len(tally.sent) / sending,
        "pairs_crossing": sum(p.crosses for p in pairs),
        "all": figures(every),
        "crossing": figures(crossing),
        "same_instance": figures(local),
        "p50": percentile(every, 0.50) if every else float("nan"),
        "p99": percentile(every, 0.99) if every else float("nan"),
    }


async def run(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    result: dict[str, Any] = {"instances": len(cluster.nodes)}
    if args.phase in ("both", "connections"):
        result["connections"] = await bench_connections(args, cluster)
    if args.phase in ("both", "latency"):
        result["latency"] = await bench_latency(args, cluster)
    for node in cluster.nodes:
        if not node.alive:
            raise RuntimeError(f"instance {node.index} died:\n{node.log_tail()}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat through nginx: 1 vs 2 instances.")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--phase", choices=["both", "connections", "latency"], default="both")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--hold", type=float, default=5, help="seconds to hold them idle")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--staff", type=int, default=5)
    parser.add_argument("--rate", type=float, default=500, help="messages per second, in all")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--drain", type=float, default=30)
    parser.add_argument("--placement", choices=["balanced", "split"], default="balanced")
    parser.add_argument("--compression", choices=["on", "off"], default="on")
    args = parser.parse_args(argv)
    args.real_argon2 = False
    args.staff = min(args.staff, args.pairs, 10)  # staff logins: 30/minute
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile()

    # before asyncio.run, which then leaves SIGINT alone: every way out cleans up
    stop_on_signals(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    print(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}"
    )
    results = []
    for count in args.instances:
        print(f"\n== {count} instance(s) behind nginx, Redis, placement {args.placement}")
        with Cluster(instances=count, postgres=args.postgres, redis=args.redis) as cluster:
            result = asyncio.run(run(args, cluster))
        results.append(result)
        for key in ("connections", "latency"):
            if key in result:
                print(f"  {key}: {result[key]}", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print("\n| instances | connections opened (s) | spread | msgs/s | p50 | p99 | lost | doubled |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        c, lat = r.get("connections", {}), r.get("latency", {})
        print(
            f"| {r['instances']} | {c.get('opened', '-')} ({c.get('seconds', 0):.1f}) "
            f"| {c.get('spread', '-')} | {lat.get('rate', 0):.0f} "
            f"| {lat.get('p50', float('nan')):.1f} ms | {lat.get('p99', float('nan')):.1f} ms "
            f"| {lat.get('lost', '-')} | {lat.get('doubled', '-')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
