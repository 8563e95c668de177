"""gpulens: observability for GPU model serving on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpulens")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"
