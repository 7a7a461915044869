"""calbridge: Canvas LMS conferences and Scheduler bookings in the calendars people use."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source for the version: pyproject.toml, read back from the installed package metadata.
    __version__ = version("calbridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
