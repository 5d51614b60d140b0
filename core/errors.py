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


# What a full disk or a folder the user cannot write means, and what to do.
STORAGE_ERRORS = {
    "ENOSPC": "no space left on its device; free space there or write the output elsewhere",
    "EDQUOT": "the disk quota is used up; free space there or write the output elsewhere",
    "EACCES": "permission denied: this user may not read or write it; change its permissions or choose another path",
    "EPERM": "operation not permitted; change its permissions or choose another path",
    "EROFS": "a read-only file system; write the output elsewhere",
}


def storage_error(error: BaseException) -> UserError | None:
    """A full disk or an unwritable place anywhere in `error`'s chain (libraries
    such as orbax wrap the OSError) as one line naming the path; None for
    anything else."""
    import errno

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        name = errno.errorcode.get(getattr(error, "errno", None) or -1) if isinstance(error, OSError) else None
        if name in STORAGE_ERRORS:
            where = error.filename or "a file being written"
            return UserError(f"{where}: {STORAGE_ERRORS[name]} ({name})")
        error = error.__cause__ or error.__context__
    return None


def exit_code(action) -> int:
    """Runs a command's `action()`: 0 when done; a UserError, a full disk or an
    unwritable place become one line on stderr and exit code 2. Anything else
    is a bug and keeps its traceback."""
    import sys

    try:
        action()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MemoryError as error:  # numpy's says how much it asked for
        print(f"error: not enough memory ({error}); lower --max-hist or --batch-size, or use a machine with more "
              "memory", file=sys.stderr)
        return 2
    except Exception as error:
        found = storage_error(error)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        return 2
    return 0
