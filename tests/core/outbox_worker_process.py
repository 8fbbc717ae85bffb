"""A real outbox worker in a process of its own, for the test that kills one mid-delivery.

    python -m tests.core.outbox_worker_process DATABASE_URL --calls FILE [--hang-after-effect FILE]

Its handler (kind `effect`) performs the side effect idempotently: it inserts the delivery's
idempotency key into the `effects` table (which the test creates) unless it is there already.
Each call appends a line to the calls file. With `--hang-after-effect`, the handler then writes
that file and freezes the whole process (a blocking sleep, so not even the delivery time-out
can run) until the test kills it: the effect has happened, the acknowledgement has not.

The master key comes from HELPLINE_MASTER_KEY (base64), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
from pathlib import Path

from sqlalchemy import text

from helpline.core.clock import SystemClock
from helpline.core.crypto import Keyring, MasterKeys
from helpline.core.db import Database
from helpline.core.outbox import Delivery, OutboxWorker

KIND = "effect"


async def main(arguments: argparse.Namespace) -> None:
    master = MasterKeys.from_keys([base64.b64decode(os.environ["HELPLINE_MASTER_KEY"])])
    clock = SystemClock()
    db = Database(arguments.database_url)
    worker = OutboxWorker(
        db,
        Keyring(master, clock),
        clock,
        owner=arguments.owner,
        lease_seconds=arguments.lease,
        poll_seconds=0.05,
    )
    calls = Path(arguments.calls)
    hang_after_effect = Path(arguments.hang_after_effect) if arguments.hang_after_effect else None

    async def perform_effect(delivery: Delivery) -> None:
        with calls.open("a") as handle:
            handle.write(f"{delivery.idempotency_key} attempt={delivery.attempt}\n")
        async with db.transaction() as session:
            seen = await session.execute(
                text("SELECT 1 FROM effects WHERE idempotency_key = :key"),
                {"key": delivery.idempotency_key},
            )
            if seen.first() is None:
                await session.execute(
                    text("INSERT INTO effects (idempotency_key, n) VALUES (:key, 1)"),
                    {"key": delivery.idempotency_key},
                )
        if hang_after_effect is not None:
            hang_after_effect.write_text(delivery.id)
            time.sleep(3600)  # blocks the event loop: nothing more happens until kill -9

    worker.register(KIND, perform_effect)
    try:
        await worker.run_forever()
    finally:
        await db.dispose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("--calls", required=True, help="file that records each handler call")
    parser.add_argument("--hang-after-effect", help="write this file after the effect, then hang")
    parser.add_argument("--owner", default=None)
    parser.add_argument("--lease", type=float, default=2.0, help="lease in seconds")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
