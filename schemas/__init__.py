"""Wire and artifact contracts shared by the worker and the trainer."""

from importlib.metadata import PackageNotFoundError, version

try:
    PACKAGE_VERSION = version("support-router")
except PackageNotFoundError:  # running from a source tree that was never installed
    PACKAGE_VERSION = "0.0.0+source"
