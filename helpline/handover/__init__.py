"""Warm handover to partner organisations, only with the victim's consent (docs/api/handover.md)."""
