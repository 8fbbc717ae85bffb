"""Errors that domain code raises and the HTTP layer turns into one JSON shape:
`{"error": {"code": "...", "message": "..."}}`."""

from __future__ import annotations

from typing import Any


class HelplineError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Invalid(HelplineError):
    status = 422
    code = "invalid"


class Unauthorized(HelplineError):
    status = 401
    code = "unauthorized"


class Forbidden(HelplineError):
    status = 403
    code = "forbidden"


class NotFound(HelplineError):
    status = 404
    code = "not_found"


class Conflict(HelplineError):
    status = 409
    code = "conflict"


class TooLarge(HelplineError):
    status = 413
    code = "too_large"


class TooManyRequests(HelplineError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(HelplineError):
    status = 503
    code = "unavailable"
