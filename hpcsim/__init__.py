"""hpcsim: transmission-and-distribution co-simulation orchestrator for HPC clusters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpcsim")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
