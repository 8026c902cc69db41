"""``python -m arpo_tools.python_tool``: serve the sandboxed python tool over stdio with the default config."""

from __future__ import annotations

from arpo_tools.python_tool.server import build_server

if __name__ == "__main__":
    build_server().run("stdio")
