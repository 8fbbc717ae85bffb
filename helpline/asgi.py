"""Entry point for ASGI servers: `uvicorn --factory helpline.asgi:build`."""

from __future__ import annotations

import logging.config

from starlette.applications import Starlette

from helpline.app import create_app
from helpline.core.config import load_settings
from helpline.core.logs import logging_config


def build() -> Starlette:
    settings = load_settings()
    logging.config.dictConfig(logging_config(settings.log_level))
    return create_app(settings)
