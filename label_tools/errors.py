"""Exceptions raised by label_tools.

Every expected failure (bad input, bad option, refusing to overwrite) derives from
:class:`LabelToolsError`, so the command line can turn it into a one-line message and exit
code 2 while programming errors still show a traceback.
"""


class LabelToolsError(Exception):
    """Root of every error label_tools raises on purpose."""


class InputError(LabelToolsError, ValueError):
    """An input file or array is missing, unreadable or inconsistent with the others."""


class OptionError(LabelToolsError, ValueError):
    """An option has a value outside what it accepts."""


class OutputError(LabelToolsError, OSError):
    """An output cannot be written (exists without ``overwrite``, directory not writable)."""
