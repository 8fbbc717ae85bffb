"""Helpline: open-source software for anonymous helplines for victims of online abuse."""

__version__ = "0.1.0"
