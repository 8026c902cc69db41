"""arpo-backends: DeepSpeed and FSDP trainers implementing ``arpo_core``'s ``Trainer`` protocol.

Skeleton until issue 5 lands; it already installs with its real dependencies (torch; extras for each backend).
"""

from importlib.metadata import version as _version

__version__ = _version("arpo-backends")
__all__ = ["__version__"]
