"""arpo-tools: MCP servers for arpo agents and the client side that registers any MCP server.

Skeleton until issue 3 lands; it already installs with its real dependency (the official ``mcp`` SDK, 2.x).
"""

from importlib.metadata import version as _version

__version__ = _version("arpo-tools")
__all__ = ["__version__"]
