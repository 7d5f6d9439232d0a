"""Errors the CLI turns into one clear line and an exit code, never a traceback."""

from __future__ import annotations


class EdgeInspectError(Exception):
    """A problem with the user's input or environment; the message names it."""

    exit_code = 1


class ConfigError(EdgeInspectError):
    """Bad configuration (systemd's EX_CONFIG)."""

    exit_code = 78


class InputDataError(EdgeInspectError):
    """A scan, image, dataset or model file that cannot be used as given."""

    exit_code = 1


class UsageError(EdgeInspectError):
    """Command-line arguments that cannot work together or are out of range."""

    exit_code = 2
