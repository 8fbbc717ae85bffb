"""Anonymous statistics: counters written at the moment of an event (docs/statistics.md)."""
