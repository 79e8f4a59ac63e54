"""User-facing errors: one line that names the file, the line and the fix, never a traceback."""

import functools
import sys


class UserError(Exception):
    """A mistake in the user's input or environment; its message is printed as one line."""


def exits_cleanly(main):
    """Wrap a command's entry point so a UserError prints `error: …` and exits 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
