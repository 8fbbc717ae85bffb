"""Structured logs: one JSON object per line.

Never personal data: no client address, user agent, message text, reported URL, e-mail
address or phone number. Uvicorn's own lines that carry a client address are scrubbed.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# "127.0.0.1:53122 - " and "[::1]:53122 - " at the start of uvicorn's connection lines
_CLIENT = re.compile(
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:]+:[0-9a-fA-F:]*):\d+ - "
)


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
        "filters": {"scrub": {"()": ScrubClientAddress}},
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": sys.stderr,
                "formatter": "json",
                "filters": ["scrub"],
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
    }
