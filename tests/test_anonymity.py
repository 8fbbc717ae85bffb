"""No log line and no stored row holds a client's address or user agent.

Runs the real `helpline demo` under uvicorn, calls it from a distinctive loopback address
(127.0.0.77) with a distinctive user agent and forwarding headers, then searches everything
the process wrote: its logs and the raw database file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

CLIENT_ADDRESS = "127.0.0.77"
USER_AGENT = "Anon-Check/1.0 (ua-marker-5b1e)"
FORWARDED_FOR = "198.51.100.23"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served_demo(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env["HELPLINE_DATA_DIR"] = str(tmp_path / "var")
    env["HELPLINE_LOG_LEVEL"] = "DEBUG"  # the most talkative setting must not leak either
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "helpline.cli", "demo", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"the demo did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base, log_path, tmp_path / "var" / "helpline.db"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_no_client_address_or_user_agent_in_logs_or_database(
    served_demo: tuple[str, Path, Path],
) -> None:
    base, log_path, database = served_demo
    headers = {
        "User-Agent": USER_AGENT,
        "X-Forwarded-For": FORWARDED_FOR,
        "X-Real-IP": FORWARDED_FOR,
        "Forwarded": f"for={FORWARDED_FOR}",
    }
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(transport=transport, base_url=base, headers=headers) as client:
        for path in ("/healthz", "/readyz", "/.well-known/helpline-keys.json", "/no/such/page"):
            assert client.get(path).status_code in (200, 404)
        assert client.post("/healthz").status_code == 405

    # a websocket attempt: uvicorn logs these with the peer's address unless scrubbed
    host, port = base.removeprefix("http://").split(":")
    raw = socket.create_connection((host, int(port)), source_address=(CLIENT_ADDRESS, 0))
    with pytest.raises(InvalidStatus):
        with connect(
            f"ws://{host}:{port}/ws/nowhere",
            sock=raw,
            user_agent_header=USER_AGENT,
            additional_headers={"X-Forwarded-For": FORWARDED_FOR},
            open_timeout=5,
        ):
            pass

    time.sleep(0.5)  # let the server flush the last log lines
    logs = log_path.read_text()
    assert '"route": "/healthz"' in logs, "the access log did not capture the requests"
    assert '"logger": "uvicorn.error"' in logs
    for secret in (CLIENT_ADDRESS, USER_AGENT, "ua-marker-5b1e", FORWARDED_FOR):
        assert secret not in logs, f"{secret} appears in the logs"

    stored = database.read_bytes()
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        stored += wal.read_bytes()
    for secret in (CLIENT_ADDRESS, "ua-marker-5b1e", FORWARDED_FOR):
        assert secret.encode() not in stored, f"{secret} is stored in the database"
