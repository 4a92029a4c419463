"""Errors that end a command with one clear line and exit code 2 (bad input)."""


class UsageError(Exception):
    """The user asked for something invalid: unknown name, bad value, malformed spec."""


class DataError(UsageError):
    """Data missing, unreadable or corrupt; the message says where we looked."""


class BackendUnavailable(UsageError):
    """A strategy cannot run on this host (missing package, no GPU, no cluster)."""
