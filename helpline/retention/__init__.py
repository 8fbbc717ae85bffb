"""Retention: the scheduled purge that crypto-shreds what is past its time, and legal holds."""
