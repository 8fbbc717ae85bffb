"""Triage: categories, risk flags, priority, service levels and the queue."""
