"""A real outbox worker with the takedown handlers, in a process of its own, for the test that
kills one mid-delivery:

    python -m tests.takedown.notice_worker_process

Settings come from HELPLINE_* variables, as in production (the database, the master key, a
short outbox lease). It builds the same services as `helpline worker` and delivers until
killed.
"""

from __future__ import annotations

import asyncio

from helpline.app import running_services
from helpline.core.clock import SystemClock
from helpline.core.config import Settings
from helpline.core.crypto import MasterKeys
from helpline.takedown.register import register_takedown


async def main() -> None:
    settings = Settings()
    master = MasterKeys.from_settings(settings)
    async with running_services(settings, master, SystemClock(), workers=False) as services:
        register_takedown(services)
        await services.outbox.run_forever()


if __name__ == "__main__":
    asyncio.run(main())
