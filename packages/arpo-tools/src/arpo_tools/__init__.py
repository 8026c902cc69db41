"""arpo-tools: arpo's tools as MCP servers (sandboxed Python, local BM25 search) and the client side that registers
any MCP server from an ``mcpServers`` file (the official ``mcp`` SDK, 2.x)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("arpo-tools")
except PackageNotFoundError:  # imported from a source tree without being installed
    __version__ = "0.0.0+unknown"
__all__ = ["__version__"]
