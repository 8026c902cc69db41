"""``arpo`` sub-commands that need torch (registered through the ``arpo.cli`` entry points; imported lazily)."""
