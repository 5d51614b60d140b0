"""The project's error types for a user's mistakes.

A `UserError` is bad input: a data file, a flag, a dataset or run directory,
a download. Command-line scripts print its message (one line naming the file,
line, column or flag and what to do) and exit with code 2. Any other
exception is a bug and surfaces with its traceback.
"""


class UserError(Exception):
    """A user's mistake; the message names what is wrong and what to do."""


class DataError(UserError, ValueError):
    """Bad input data; the message names the file, column and line."""


class ConfigError(UserError, ValueError):
    """A setting that cannot work; the message names it."""


class RunError(UserError):
    """A run directory or checkpoint that cannot be used as asked; the message names the file."""


def exit_code(action) -> int:
    """Runs a command's `action()`: 0 when done; a UserError becomes one line on
    stderr and exit code 2. Anything else is a bug and keeps its traceback."""
    import sys

    try:
        action()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
