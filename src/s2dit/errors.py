"""The one exception type for user mistakes.

Anything raised as :class:`S2DitError` is a problem with the user's input (a bad flag, a missing file,
an invalid size). The CLI prints its message on one line and exits with status 2, without a traceback.
Everything else is a bug and keeps its traceback.
"""


class S2DitError(Exception):
    """A user-facing error whose message says what is wrong and how to fix it."""


class ConfigError(S2DitError):
    """An invalid configuration: unknown key, wrong type or an invalid value."""
