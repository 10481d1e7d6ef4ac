"""The command-line shells: parse, call the library, print, exit. Nothing below ``realciao/``
imports from here.

Every command reports bad input (any ``RealciaoError``) as one line, ``PROG: error: ...``,
with exit code 2, and never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from realciao.errors import RealciaoError


def fail(prog: str, error: RealciaoError | str) -> int:
    """Print a user-facing error as one line and return the usage-error exit code."""
    message = " ".join(str(error).split())
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return 2


def exit_process(code: int) -> None:
    """Exit; a process of a multi-process group leaves without interpreter teardown, where
    CPU process groups sometimes abort ("terminate called without an active exception")."""
    sys.stdout.flush()
    sys.stderr.flush()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os._exit(code)
    sys.exit(code)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Each option's default appended to its help, unless the help already says it or
    there is none to say (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"
