"""arpo-backends: DeepSpeed and FSDP trainers implementing ``arpo_core``'s ``Trainer`` protocol, the ARPO objective,
weight publishing, checkpoints and the CPU inference server (``arpo serve``)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("arpo-backends")
except PackageNotFoundError:  # imported from a source tree without being installed
    __version__ = "0.0.0+unknown"
__all__ = ["__version__"]
