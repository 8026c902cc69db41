"""The ``arpo`` command."""

from arpo_core.cli.app import app, main

__all__ = ["app", "main"]
