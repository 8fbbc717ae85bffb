"""Shared plumbing: settings, storage, keys, bus, outbox, scheduler, audit, rate limits, HTTP.

Nothing in `core` imports a domain package.
"""
