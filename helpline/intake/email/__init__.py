"""The e-mail channel: an SMTP listener for inbound mail, replies out through the outbox.

For the app: `register_email(services)` (outbox handler, quarantine purge job),
`smtp_listener_if_configured(services)` (the listener for `helpline serve`) and
`email_routes()` (the staff endpoints). See docs/email.md.
"""

from __future__ import annotations

from helpline.intake.email.listener import smtp_listener, smtp_listener_if_configured
from helpline.intake.email.outbound import register_email
from helpline.intake.email.routes import email_routes

__all__ = ["email_routes", "register_email", "smtp_listener", "smtp_listener_if_configured"]
