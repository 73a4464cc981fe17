"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class MmsslError(Exception):
    """Base class of every error mmssl raises on purpose."""

    exit_at_once = False  # the command line exits without running destructors (os._exit)


class DataError(MmsslError):
    """Bad input data: the message names the file, the line or field, and what is wrong."""


class ConfigError(MmsslError):
    """Bad configuration: unknown key, wrong type, or an impossible value."""


class WriteError(MmsslError):
    """A file or folder could not be written (disk full, no permission, a path under a file)."""
