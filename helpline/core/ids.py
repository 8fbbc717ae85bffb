"""Identifiers. Row ids are made in the process (not by the database) so that a value can be
encrypted with its row id as associated data before the row is inserted."""

from __future__ import annotations

import secrets
import uuid


def new_id() -> str:
    """A random 128-bit identifier as 32 hex characters; reveals nothing (no time, no host)."""
    return uuid.uuid4().hex


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
