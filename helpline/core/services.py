"""What the app's lifespan builds and every request and job can use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helpline.core.bus import Bus
from helpline.core.clock import Clock
from helpline.core.config import Settings
from helpline.core.crypto import Keyring, Signer
from helpline.core.db import Database
from helpline.core.outbox import OutboxWorker
from helpline.core.ratelimit import RateLimiter
from helpline.core.scheduler import Scheduler


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    keyring: Keyring
    signer: Signer
    bus: Bus
    limiter: RateLimiter
    outbox: OutboxWorker
    scheduler: Scheduler
    # per-instance parts that domain packages start in `running_services` (core knows none of
    # them by type), e.g. the console's presence registry under "presence"
    extras: dict[str, Any] = field(default_factory=dict)
