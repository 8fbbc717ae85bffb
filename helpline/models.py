"""Every table of the app, for migrations and tests (the metadata must be complete)."""

from __future__ import annotations


def import_all_models() -> None:
    import helpline.cases.models  # noqa: F401
    import helpline.core.models  # noqa: F401
    import helpline.evidence.models  # noqa: F401
    import helpline.handover.models  # noqa: F401
    import helpline.intake.callback.models  # noqa: F401
    import helpline.intake.email.models  # noqa: F401
    import helpline.retention.models  # noqa: F401
    import helpline.staff.models  # noqa: F401
    import helpline.stats.models  # noqa: F401
    import helpline.takedown.models  # noqa: F401
    import helpline.triage.models  # noqa: F401
