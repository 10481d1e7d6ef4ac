"""The one base class of errors a user can fix: a bad file, option, argument or folder.

Every command (``realciao-upscale``, ``realciao-eval``, ``realciao-fit-recipe``,
``train_realciao.py``) catches ``RealciaoError`` once and prints its message as one line,
``error: ...``, with exit code 2; so each message names the file or key and says what was
expected. Anything else escaping a command is a bug in realciao, not bad input.
"""

from __future__ import annotations


class RealciaoError(Exception):
    """Bad input, reported in one line that names the file or key and what was expected."""
