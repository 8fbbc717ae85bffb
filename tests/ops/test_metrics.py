"""`/metrics`: who may read it, and exactly the documented series with the right figures and
nothing that could point at a case or a person."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from helpline.cases.models import Case
from helpline.cases.receipts import new_reference
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.db import Database
from helpline.core.ids import new_id
from helpline.core.models import OutboxEntry
from helpline.metrics import SERIES
from helpline.retention.models import PurgeRun
from helpline.takedown.models import Notice, Platform
from helpline.triage.models import SlaBreach

TOKEN = "metrics-token-for-the-test-3f9c"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


@pytest.fixture
def metrics_token() -> str | None:
    return TOKEN


@pytest.fixture
def settings(settings_for: Any, database_url: str, metrics_token: str | None) -> Settings:
    result: Settings = settings_for(database_url, metrics_token=metrics_token)
    return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def scrape(client: httpx.AsyncClient) -> dict[str, list[Sample]]:
    answer = await client.get("/metrics", headers=bearer(TOKEN))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {f.name: f.samples for f in text_string_to_metric_families(answer.text)}


def by_label(samples: list[Sample], label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in samples}


# ---------------------------------------------------------------- who may read it


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token"),
        bearer(TOKEN[:-1]),
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["anonymous", "wrong", "prefix", "basic", "no-scheme"],
)
async def test_a_caller_without_the_token_is_refused_without_details(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {
        "error": {"code": "unauthorized", "message": "authentication required"}
    }
    assert "helpline_" not in answer.text


@pytest.mark.parametrize("metrics_token", [None, ""])
async def test_without_a_token_configured_there_is_no_metrics_endpoint(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.get("/no-such-endpoint")
    for headers in ({}, bearer(TOKEN), bearer("")):
        answer = await client.get("/metrics", headers=headers)
        assert answer.status_code == 404
        assert answer.json() == unknown.json()


# ---------------------------------------------------------------- what it says


def documented_series() -> set[str]:
    text = OPERATIONS.read_text()
    section = text.split("\n## Monitoring", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^ *\| `(helpline_[a-z_]+)`", section, re.MULTILINE))


def test_the_documented_series_are_the_ones_in_the_code() -> None:
    assert documented_series() == set(SERIES)


async def test_exactly_the_documented_series_on_an_empty_helpline(
    client: httpx.AsyncClient,
) -> None:
    families = await scrape(client)
    assert set(families) == set(SERIES) == documented_series()
    assert by_label(families["helpline_queue_cases"], "priority") == {
        "urgent": 0,
        "high": 0,
        "normal": 0,
        "low": 0,
    }
    assert families["helpline_purge_last_run_timestamp_seconds"] == []
    assert set(by_label(families["helpline_purge_last_run_status"], "status").values()) == {0}
    assert by_label(families["helpline_websocket_connections"], "kind") == {
        "chat_victim": 0,
        "chat_staff": 0,
        "console": 0,
    }
    [build] = families["helpline_build_info"]
    assert build.value == 1 and build.labels["version"]


def case(now: datetime, priority: int, *, status: str = "new", waited: timedelta) -> Case:
    return Case(
        id=new_id(),
        reference=new_reference(),
        channel="chat",
        status=status,
        priority=priority,
        created_at=now - waited,
        queued_at=now - waited,
        last_activity_at=now,
    )


def outbox_entry(now: datetime, kind: str, status: str) -> OutboxEntry:
    entry_id = new_id()
    return OutboxEntry(
        id=entry_id,
        kind=kind,
        idempotency_key=f"{kind}:{entry_id}",
        key_scope="test",
        payload=b"{}",
        status=status,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


def notice(now: datetime, platform_id: str, status: str, due_in: timedelta) -> Notice:
    return Notice(
        id=new_id(),
        idempotency_key=new_id(),
        reference=f"N-{new_reference()}",
        platform_id=platform_id,
        category="intimate_images",
        legal_basis="test",
        status=status,
        delivery="email",
        created_at=now,
        updated_at=now,
        sent_at=now - timedelta(days=2),
        due_at=now + due_in,
    )


async def test_the_figures_of_a_small_known_helpline(
    client: httpx.AsyncClient, db: Database, clock: FrozenClock
) -> None:
    now = clock.now()
    async with db.transaction() as session:
        urgent = case(now, 1, waited=timedelta(minutes=7))
        cases = [
            urgent,
            case(now, 1, status="in_conversation", waited=timedelta(hours=3)),
            case(now, 3, waited=timedelta(minutes=2)),
            case(now, 3, waited=timedelta(seconds=30)),
            case(now, 4, status="waiting_victim", waited=timedelta(days=1)),
            case(now, 2, status="closed", waited=timedelta(days=2)),  # not in the queue
            # a callback whose first window opens in an hour: not in the queue yet
            case(now, 2, waited=-timedelta(hours=1)),
        ]
        session.add_all(cases)
        await session.flush()
        session.add_all(
            [
                SlaBreach(
                    id=new_id(),
                    case_id=urgent.id,
                    kind=kind,
                    priority=1,
                    due_at=now - timedelta(minutes=minutes),
                    noticed_at=now,
                )
                for kind, minutes in (
                    ("first_response", 2),
                    ("next_response", 1),
                    ("next_response", 3),
                )
            ]
        )
        platform = Platform(
            id=new_id(),
            name="Photoshare",
            slug="photoshare",
            delivery="email",
            contact_email="dsa@photoshare.example.org",
            created_at=now,
            updated_at=now,
        )
        session.add(platform)
        await session.flush()
        session.add_all(
            [
                notice(now, platform.id, "sent", -timedelta(hours=1)),  # overdue
                notice(now, platform.id, "receipt_confirmed", timedelta(hours=5)),
                notice(now, platform.id, "honoured", -timedelta(hours=9)),  # decided
                notice(now, platform.id, "draft", -timedelta(hours=9)),  # not sent
            ]
        )
        session.add_all(
            [
                outbox_entry(now, "email.reply", "dead"),
                outbox_entry(now, "takedown.notice", "pending"),
                outbox_entry(now, "takedown.notice", "pending"),
                outbox_entry(now, "takedown.notice", "delivered"),
                outbox_entry(now, "no.such.kind", "dead"),
            ]
        )
        session.add_all(
            [
                PurgeRun(
                    id=new_id(),
                    started_at=now - timedelta(hours=25),
                    finished_at=now - timedelta(hours=24, minutes=59),
                    trigger="schedule",
                    status="done",
                    counts='{"cases": 3, "messages": 41, "blobs": 7}',
                ),
                PurgeRun(  # a dry run is not a purge
                    id=new_id(),
                    started_at=now - timedelta(hours=2),
                    finished_at=now - timedelta(hours=2),
                    trigger="cli",
                    dry_run=True,
                    status="done",
                    counts='{"cases": 99}',
                ),
                PurgeRun(  # the newest real run is still going
                    id=new_id(),
                    started_at=now - timedelta(minutes=1),
                    trigger="schedule",
                    status="running",
                ),
            ]
        )

    families = await scrape(client)
    assert set(families) == set(SERIES)
    assert by_label(families["helpline_queue_cases"], "priority") == {
        "urgent": 2,
        "high": 0,
        "normal": 2,
        "low": 1,
    }
    assert by_label(families["helpline_queue_oldest_wait_seconds"], "priority") == {
        "urgent": 7 * 60,
        "high": 0,
        "normal": 2 * 60,
        "low": 0,  # in the queue, but somebody has it
    }
    assert by_label(families["helpline_sla_breaches"], "kind") == {
        "first_response": 1,
        "next_response": 2,
    }
    assert by_label(families["helpline_notices_open"], "status") == {
        "sent": 1,
        "receipt_confirmed": 1,
        "more_info_requested": 0,
        "no_response": 0,
    }
    [overdue] = families["helpline_notices_overdue"]
    assert overdue.value == 1
    dead = by_label(families["helpline_outbox_dead"], "kind")
    assert dead["email.reply"] == 1 and dead["other"] == 1
    assert sum(dead.values()) == 2
    pending = by_label(families["helpline_outbox_pending"], "kind")
    assert pending["takedown.notice"] == 2 and sum(pending.values()) == 2
    [finished] = families["helpline_purge_last_run_timestamp_seconds"]
    assert finished.value == (now - timedelta(hours=24, minutes=59)).timestamp()
    assert by_label(families["helpline_purge_last_run_status"], "status") == {
        "running": 1,
        "done": 0,
        "failed": 0,
    }
    items = by_label(families["helpline_purge_last_run_items"], "kind")
    assert items["cases"] == 3 and items["messages"] == 41 and items["blobs"] == 7
    assert items["notices"] == 0

    # no label value could point at a case, a notice, an entry or a person
    ids = {c.id for c in cases} | {c.reference for c in cases}
    for samples in families.values():
        for sample in samples:
            for value in sample.labels.values():
                assert value not in ids
                assert not re.fullmatch(r"[0-9a-f]{32}", value), value
                assert not re.search(r"[0-9A-Z]{4}-[0-9A-Z]{4}", value), value
                assert "@" not in value and "/" not in value, value
