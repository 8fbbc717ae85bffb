"""Settings, read once from `HELPLINE_*` environment variables.

A bad or missing value stops the process with one line that names the variable and says what is
wrong (`ConfigError`). Secrets are `SecretStr`, and URLs that may carry a password are masked in
`repr()`, so a settings object can be logged safely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from helpline.core.hours import OpeningHours

ENV_PREFIX = "HELPLINE_"


class ConfigError(Exception):
    """A setting is missing or invalid; `str()` is one line naming the variable."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database-style URL: mask everything after the scheme
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***" if rest else "***"


# the triage priorities by level (helpline/triage/vocabulary.py `Priority`; core imports no
# domain package, a test keeps the two the same)
PRIORITY_NAMES = ("urgent", "high", "normal", "low")


def parse_priority_minutes(text: str) -> dict[int, int]:
    """`urgent=5,high=10,normal=15,low=60` → {1: 5, 2: 10, 3: 15, 4: 60}; every priority once,
    each a whole number of minutes of at least 1."""
    example = "urgent=5,high=10,normal=15,low=60"
    minutes: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, number = (s.strip() for s in part.partition("="))
        if not equals or name not in PRIORITY_NAMES:
            raise ValueError(f"{part!r} is not priority=minutes (like {example})")
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"{name}: {number!r} is not a whole number of minutes (1 or more)")
        level = PRIORITY_NAMES.index(name) + 1
        if level in minutes:
            raise ValueError(f"{name} is given twice")
        minutes[level] = int(number)
    missing = [name for level, name in enumerate(PRIORITY_NAMES, 1) if level not in minutes]
    if missing:
        raise ValueError(f"no target for {', '.join(missing)} (like {example})")
    return minutes


class Settings(BaseSettings):
    """Every setting of a Helpline instance. The README's configuration table lists them all."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, frozen=True
    )

    # --- storage
    data_dir: Path = Field(
        default=Path("./var"),
        description="Directory for the SQLite file, the key file and evidence blobs.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty: SQLite file `helpline.db` in the data directory. "
        "Production: `postgresql+asyncpg://user:pass@host/db`.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for the bus and rate limits across instances, "
        "e.g. `redis://127.0.0.1:6379/0`. Empty: in-process bus and memory rate limits.",
    )
    # --- keys
    master_key: SecretStr | None = Field(
        default=None,
        description="Master key(s) (KEK): base64 of 32 bytes; several separated by commas, the "
        "first one current (used while rotating). Takes precedence over the key file.",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="Key file written by `helpline keys init`. Empty: `master.key` in the data "
        "directory.",
    )
    # --- web
    base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public base URL; `https://` turns on HSTS.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of the structured (JSON) logs."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token Prometheus sends to read `/metrics`; empty: `/metrics` "
        "answers 404.",
    )
    # --- chat
    opening_hours: str = Field(
        default="mo-fr 09:00-21:00; sa 12:00-17:00",
        description="When staff answer, in the helpline's time zone: `days hh:mm-hh:mm` "
        "separated by `;` (days `mo`..`su`, ranges like `mo-fr`). Outside them victims can "
        "still write and are told when staff are back.",
    )
    timezone: str = Field(default="Europe/Amsterdam", description="The helpline's time zone.")
    quick_exit_url: str = Field(
        default="https://www.weeronline.nl/",
        description="The neutral site that Quick exit replaces the page with.",
    )
    staff_idle_minutes: int = Field(
        default=30, ge=1, description="A staff session ends after this long without activity."
    )
    staff_max_failed_logins: int = Field(
        default=5, ge=1, description="Failed logins in a row before a staff account is locked."
    )
    staff_lockout_minutes: int = Field(
        default=15, ge=1, description="How long a staff account stays locked."
    )
    victim_max_failed_logins: int = Field(
        default=5, ge=1, description="Wrong passphrases in a row before a case reference is locked."
    )
    victim_lockout_minutes: int = Field(
        default=30, ge=1, description="How long a case reference stays locked."
    )
    # --- evidence
    evidence_max_file_mb: int = Field(
        default=200, ge=1, description="Largest evidence file accepted, in MiB."
    )
    evidence_max_case_mb: int = Field(
        default=2000, ge=1, description="Most evidence one case may hold, in MiB."
    )
    snapshot_timeout_seconds: float = Field(
        default=15, gt=0, description="Time limit for fetching a URL snapshot."
    )
    snapshot_max_mb: int = Field(default=20, ge=1, description="Largest URL snapshot, in MiB.")
    snapshot_max_redirects: int = Field(
        default=5, ge=0, description="Redirects a URL snapshot may follow."
    )
    snapshot_allow_loopback: bool = Field(
        default=False,
        description="Let URL snapshots reach 127.0.0.0/8 (tests only; never in production).",
    )
    # --- evidence blobs: the data directory, or an S3-compatible bucket
    blob_backend: Literal["filesystem", "s3"] = Field(
        default="filesystem",
        description="Where evidence blobs (encrypted in the process either way) are kept: "
        "`filesystem` (the data directory) or `s3` (an S3-compatible bucket; several instances "
        "can share it).",
    )
    s3_bucket: str = Field(
        default="", description="The bucket for evidence blobs; required with `s3`."
    )
    s3_endpoint_url: str = Field(
        default="",
        description="The S3-compatible service's URL (MinIO, Ceph, Garage, ...); empty: AWS S3.",
    )
    s3_region: str = Field(default="us-east-1", description="The bucket's region.")
    s3_access_key_id: str | None = Field(
        default=None,
        description="S3 access key id; empty: boto3's own chain (`AWS_*` variables, instance "
        "or pod role).",
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key (with the access key id)."
    )
    s3_prefix: str = Field(
        default="evidence/",
        description="Prefix of the vault's object names in the bucket (other areas, like "
        "handover packets, get `<prefix><area>/`).",
    )
    # --- e-mail in
    smtp_in_host: str = Field(default="127.0.0.1", description="Inbound SMTP listen address.")
    smtp_in_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Inbound SMTP listen port; 0 disables inbound mail in `helpline serve`.",
    )
    inbound_addresses: str = Field(
        default="",
        description="Comma-separated addresses that inbound mail is accepted for.",
    )
    smtp_in_max_message_mb: int = Field(
        default=25, ge=1, description="Largest inbound e-mail, in MiB; larger is refused (552)."
    )
    email_max_attachments: int = Field(
        default=10, ge=0, description="Attachments per e-mail; a mail with more is quarantined."
    )
    email_max_attachment_mb: int = Field(
        default=20, ge=1, description="Largest e-mail attachment, in MiB; larger is quarantined."
    )
    email_acknowledge: bool = Field(
        default=False,
        description="Answer a new e-mail case with an automatic acknowledgement (case "
        "reference, `Auto-Submitted: auto-replied`).",
    )
    # --- e-mail out
    smtp_out_host: str = Field(default="", description="Outbound SMTP relay; empty: no mail out.")
    smtp_out_port: int = Field(default=587, ge=1, le=65535, description="Outbound SMTP port.")
    smtp_out_security: Literal["none", "starttls", "tls"] = Field(
        default="starttls", description="`none`, `starttls` or `tls` (implicit TLS)."
    )
    smtp_out_username: str | None = Field(default=None, description="SMTP relay user name.")
    smtp_out_password: SecretStr | None = Field(default=None, description="SMTP relay password.")
    mail_from: str = Field(
        default="helpline@localhost", description="Sender address of outgoing mail."
    )
    mail_from_name: str = Field(
        default="Helpline", max_length=80, description="Display name of outgoing mail."
    )
    smtp_out_timeout_seconds: float = Field(
        default=30, gt=0, description="Time limit for one delivery to the SMTP relay."
    )
    smtp_out_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) to verify the relay's TLS certificate; empty: the "
        "system's.",
    )
    # --- callback requests
    callback_region: str = Field(
        default="NL",
        description="Country assumed for a callback number written without a country code "
        "(ISO 3166 code, e.g. `NL`, `BE`).",
    )
    # --- retention (days, counted from case closure or last activity)
    retention_messages_days: int = Field(default=90, ge=1, description="Chat and e-mail messages.")
    retention_evidence_days: int = Field(default=365, ge=1, description="Evidence files.")
    retention_callback_days: int = Field(default=7, ge=1, description="Callback phone numbers.")
    retention_notices_days: int = Field(default=730, ge=1, description="Removal notices.")
    retention_handover_days: int = Field(default=30, ge=1, description="Handover packets.")
    retention_quarantine_days: int = Field(default=30, ge=1, description="Quarantined e-mail.")
    retention_audit_days: int = Field(default=2555, ge=1, description="Audit log entries.")
    # --- service levels
    sla_first_response_minutes: str = Field(
        default="urgent=5,high=10,normal=15,low=60",
        description="First-response targets per priority, in minutes from joining the queue: "
        "`urgent=5,high=10,normal=15,low=60` (all four priorities).",
    )
    sla_next_response_minutes: str = Field(
        default="urgent=10,high=20,normal=30,low=120",
        description="Next-response targets per priority, in minutes from the oldest victim "
        "message staff have not answered: `urgent=10,high=20,normal=30,low=120`.",
    )
    sla_notice_hours: int = Field(
        default=24, ge=1, description="Default time a platform has to act on a notice."
    )
    # --- removal notices (helpline/takedown)
    notice_notifier_name: str = Field(
        default="Helpline",
        max_length=120,
        description="The helpline's name as the notifier in DSA notices (art. 16(2)(c)).",
    )
    notice_notifier_email: str = Field(
        default="",
        description="The notifier's e-mail in DSA notices; empty: `HELPLINE_MAIL_FROM`.",
    )
    trusted_flagger_statement: str = Field(
        default="",
        max_length=4000,
        description="How the helpline stays independent of the platforms, as the yearly "
        "trusted-flagger report (DSA art. 22(3)) states it; free text.",
    )
    publish_report: bool = Field(
        default=False,
        description="Publish the annual report (`/report/{year}`, small numbers suppressed) "
        "for every year that is over; off: those pages answer 404.",
    )
    notice_reminder_before_hours: int = Field(
        default=4,
        ge=0,
        description="Remind the platform this many hours before a notice is due; 0: no reminder.",
    )
    notice_reminder_after_hours: int = Field(
        default=2,
        ge=0,
        description="Remind the platform this many hours after a notice was due; 0: at once.",
    )
    notice_escalation_after_hours: int = Field(
        default=24,
        ge=0,
        description="Hours after the deadline when the first escalation step is drafted for "
        "staff to approve.",
    )
    notice_escalation_step_hours: int = Field(
        default=72,
        ge=1,
        description="Hours after one escalation step was taken before the next is drafted.",
    )
    notice_recheck_hours: int = Field(
        default=0,
        ge=0,
        description="Re-check the URLs of open notices this often (HTTP status through the "
        "snapshot fetcher); 0: only when staff ask.",
    )
    notice_portal_days: int = Field(
        default=30, ge=1, description="How long a notice's platform portal link works."
    )
    notice_api_timeout_seconds: float = Field(
        default=20, gt=0, description="Time limit for one HTTPS POST of a notice to a platform."
    )
    notice_api_allow_http: bool = Field(
        default=False,
        description="Allow plain `http://` platform endpoints (tests only; never in production).",
    )
    # --- background work
    # --- warm handover to partners (helpline/handover)
    handover_consent_hours: int = Field(
        default=72,
        ge=1,
        description="How long a victim's consent to a handover stays valid before the packet "
        "must be sealed; after that staff ask again.",
    )
    handover_link_hours: int = Field(
        default=72,
        ge=1,
        description="How long a partner's one-time download link for a handover packet works.",
    )
    outbox_max_attempts: int = Field(
        default=8, ge=1, description="Delivery attempts before an outbox entry is dead-lettered."
    )
    outbox_lease_seconds: int = Field(
        default=60, ge=1, description="How long a worker owns an entry it is delivering."
    )
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the outbox worker and scheduler look for work."
    )
    run_workers: bool = Field(
        default=True, description="Run the outbox worker and scheduler inside the app process."
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            if value.startswith(("postgresql://", "postgres://")):
                return "postgresql+asyncpg://" + value.split("://", 1)[1]
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value

    @model_validator(mode="after")
    def _opening_hours(self) -> Settings:
        try:
            OpeningHours.parse(self.opening_hours, self.timezone)
        except ValueError as exc:
            # reported against the field it concerns, like a field error
            raise ValueError(f"HELPLINE_OPENING_HOURS: {exc}") from None
        return self

    @property
    def hours(self) -> OpeningHours:
        return OpeningHours.parse(self.opening_hours, self.timezone)

    @field_validator("sla_first_response_minutes", "sla_next_response_minutes")
    @classmethod
    def _sla_minutes(cls, value: str) -> str:
        parse_priority_minutes(value)
        return value

    @property
    def sla_first_response(self) -> dict[int, int]:
        """First-response target in minutes by priority level (1 urgent .. 4 low)."""
        return parse_priority_minutes(self.sla_first_response_minutes)

    @property
    def sla_next_response(self) -> dict[int, int]:
        """Next-response target in minutes by priority level (1 urgent .. 4 low)."""
        return parse_priority_minutes(self.sla_next_response_minutes)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _s3_endpoint_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("s3_prefix")
    @classmethod
    def _s3_prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a relative key prefix like `evidence/`")
        return value

    @model_validator(mode="after")
    def _s3_complete(self) -> Settings:
        # reported against the field it concerns, like a field error
        if self.blob_backend == "s3" and not self.s3_bucket:
            raise ValueError("HELPLINE_S3_BUCKET: required when HELPLINE_BLOB_BACKEND is s3")
        if bool(self.s3_access_key_id) != (self.s3_secret_access_key is not None):
            raise ValueError(
                "HELPLINE_S3_SECRET_ACCESS_KEY: give both the access key id and the secret "
                "access key, or neither"
            )
        return self

    @field_validator("callback_region")
    @classmethod
    def _callback_region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a country code like NL or BE")
        return value.upper()

    @field_validator("inbound_addresses")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for address in filter(None, (a.strip() for a in value.split(","))):
            if address.count("@") != 1:
                raise ValueError(f"{address!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _defaults_from_data_dir(self) -> Settings:
        # frozen model: fill derived defaults through object.__setattr__
        if not self.database_url:
            db = (self.data_dir / "helpline.db").as_posix()
            object.__setattr__(self, "database_url", f"sqlite+aiosqlite:///{db}")
        if self.master_key_file is None:
            object.__setattr__(self, "master_key_file", self.data_dir / "master.key")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def inbound_address_list(self) -> list[str]:
        return [a.strip().lower() for a in self.inbound_addresses.split(",") if a.strip()]

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in ("database_url", "redis_url") and value:
                value = mask_url(value)
            yield name, value


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise `ConfigError` with one clear line if invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        if error["loc"]:
            message = f"{env_name(str(error['loc'][0]))}: {message}"
        raise ConfigError(f"{message}{more}") from None
