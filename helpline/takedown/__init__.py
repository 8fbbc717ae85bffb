"""Takedown: DSA notices as a trusted flagger — the platform directory (`platforms`), the
notice builder (`builder`, art. 16), signed delivery through the outbox (`delivery`), per-URL
outcomes with append-only history (`state`, `states`), the SLA clock and the escalation
ladder (`sla`, `escalation`), URL re-checks (`recheck`) and the staff endpoints
(`routes_staff`). The app wires `register.takedown_staff_routes()` and
`register.register_takedown(services)`. Contract: docs/api/takedown.md."""
