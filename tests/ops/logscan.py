"""Capturing everything the process logs, and searching it for what victims told us.

`logging_at_debug()` turns every logger to DEBUG for the duration (root, `helpline.*`,
`sqlalchemy.engine` with each statement's parameters, aiosmtpd's `mail.log`, asyncio, ...),
except the few third-party loggers whose levels `helpline.core.logs.logging_config("DEBUG")`
itself pins (websockets and uvicorn at INFO, httpx at WARNING: their debug lines quote frames,
headers and fetched URLs, which is why production keeps them there). Every record reaches one
handler on the root logger, which keeps the record (message, arguments, extra fields, any
traceback) and its line as Helpline's JSON formatter writes it.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterable, Iterator

from helpline.core.logs import JSONFormatter, RequestIdFilter, logging_config


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.json = JSONFormatter()
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        try:
            self.lines.append(self.json.format(record))
        except Exception:  # a record the formatter cannot write is still searched, raw
            self.lines.append(repr(vars(record)))

    def text(self) -> str:
        """Everything captured, in every form a log line could take."""
        parts = list(self.lines)
        for record in self.records:
            parts.append(str(record.msg))
            parts.append(repr(record.args))
            with contextlib.suppress(Exception):
                parts.append(record.getMessage())
            parts.append(repr({k: v for k, v in vars(record).items() if k != "exc_info"}))
            if record.exc_info:
                parts.append("".join(traceback.format_exception(*record.exc_info)))
        return "\n".join(parts)

    def of(self, logger: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == logger or r.name.startswith(logger + ".")]


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets that occur in `text` (case-insensitive)."""
    folded = text.casefold()
    return [secret for secret in secrets if secret.casefold() in folded]


@contextlib.contextmanager
def logging_at_debug() -> Iterator[Capture]:
    capture = Capture()
    pinned = {
        name: config["level"]
        for name, config in logging_config("DEBUG")["loggers"].items()
        if not name.startswith("helpline")
    }
    names = set(pinned) | {"helpline", "sqlalchemy.engine", "sqlalchemy.pool", "mail.log"}
    saved = {
        name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in names
    }
    root = logging.getLogger()
    saved_root = root.level
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(pinned.get(name, logging.DEBUG))
        logger.propagate = True  # to the capture on the root, whatever else handles it
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(saved_root)
        for name, (level, propagate) in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate
