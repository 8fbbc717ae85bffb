"""Structured logs: one JSON object per line.

Never personal data: no client address, user agent, message text, reported URL, e-mail
address or phone number. Uvicorn's own lines that carry a client address are scrubbed.

Every line written while an HTTP request or a websocket connection is handled carries its
`request_id`: random (never derived from the client), set by `AccessLogMiddleware` and also
returned as the `X-Request-Id` response header, so one request's lines can be found together.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# "127.0.0.1:53122 - " and "[::1]:53122 - " at the start of uvicorn's connection lines
_CLIENT = re.compile(
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:]+:[0-9a-fA-F:]*):\d+ - "
)


# the request or websocket connection being handled (None outside of one)
request_id: ContextVar[str | None] = ContextVar("helpline_request_id", default=None)


def new_request_id() -> str:
    """16 random hex characters: enough to tell a day's requests apart, and nothing more."""
    return secrets.token_hex(8)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record emitted while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ScrubClientAddress(logging.Filter):
    """Uvicorn names the client's address in its connection lines; remove it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _CLIENT.sub("- ", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the app and uvicorn (uvicorn's access log is off:
    `AccessLogMiddleware` writes one without the client address)."""
    server_level = "INFO" if level == "DEBUG" else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "scrub": {"()": ScrubClientAddress},
            "request_id": {"()": RequestIdFilter},
        },
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": sys.stderr,
                "formatter": "json",
                "filters": ["scrub", "request_id"],
            }
        },
        "loggers": {
            "helpline": {"handlers": ["stderr"], "level": level, "propagate": False},
            # never below INFO: uvicorn's and websockets' debug lines quote request headers
            "uvicorn": {"handlers": ["stderr"], "level": server_level, "propagate": False},
            "uvicorn.error": {"level": server_level},
            "websockets": {"handlers": ["stderr"], "level": server_level, "propagate": False},
            # their debug and info lines name the hosts and URLs of URL snapshots
            "httpx": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "httpcore": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
        # everything else (libraries' warnings) in the same shape, never their debug lines:
        # sqlalchemy.engine's INFO lines would list every statement and its parameters
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
