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
from realciao.files import output_problem


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


def bad_output(argv: list[str] | None, outputs: dict[tuple[str, ...], bool], defaults: dict[str, str] | None = None
               ) -> str | None:
    """What is wrong with the output paths in ``argv``, or None; read before the command's own
    parser is built (its help needs torch, seconds to import), so a path under a file is
    refused in a fraction of a second. ``outputs``: option strings -> whether a folder;
    ``defaults``: first option string -> the path used when the option is not given."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    dests = {names: early.add_argument(*names, default=(defaults or {}).get(names[0])).dest for names in outputs}
    given, _ = early.parse_known_args(sys.argv[1:] if argv is None else argv)
    for names, folder in outputs.items():
        path = getattr(given, dests[names])
        problem = output_problem(path, folder) if path else None
        if problem:
            return f"{names[0]} {path}: {problem}"
    return None


def parse_size(text: str, height_first: bool = False) -> tuple[int, int]:
    """'WxH' (or 'HxW' when ``height_first``) -> (H, W), for argparse."""
    order, example = ("HEIGHTxWIDTH", "64x48") if height_first else ("WIDTHxHEIGHT", "3000x4000")
    try:
        first, second = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must be {order}, e.g. {example}; got {text!r}") from error
    if first < 1 or second < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return (first, second) if height_first else (second, first)
