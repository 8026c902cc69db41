"""arpo-core: ARPO (Agentic Reinforced Policy Optimization, arXiv 2507.19849) for tool-using LLM agents.

The algorithm lives in :mod:`arpo_core.algo` (pure, synchronous, numpy-only), the rollout-tree data model in
:mod:`arpo_core.tree`, tool-call parsing in :mod:`arpo_core.toolcalls`, configs in :mod:`arpo_core.config`.
Importing this package never imports torch.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("arpo-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
