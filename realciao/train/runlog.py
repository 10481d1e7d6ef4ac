"""``experiments/NAME/train.log``: what the run was (options, versions, device, world size)
and every line it printed, kept beside its checkpoints.

While a run is going, the main process's ``sys.stdout`` and ``sys.stderr`` are teed into the
log, and warnings (unreadable images, skipped pairs) are logged as they are shown, even where
a caller records them instead of printing (pytest); forked DataLoader workers inherit both. Only complete lines are written; a progress
bar redrawn with carriage returns leaves its last state, as on a terminal. Each start, fresh
or resumed, appends a header, so one log covers the whole run across resumes.
"""

from __future__ import annotations

import io
import sys
import time
import warnings
from pathlib import Path
from typing import TextIO

import yaml


class _Tee(io.TextIOBase):
    """A text stream that writes through to ``stream`` and keeps complete lines for ``log``."""

    def __init__(self, stream: TextIO, log: RunLog):
        self.stream, self.log, self.pending = stream, log, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if not self.log.muted:
                self.log.line(line.rsplit("\r", 1)[-1])  # what a terminal shows after carriage returns
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


class RunLog:
    """The log file of one experiment; ``path`` None (processes other than the main one) keeps nothing."""

    def __init__(self, path: Path | None):
        self.path = path
        self._file = None
        self._tees: list[tuple[str, _Tee]] = []
        self._shown_by = None  # the warnings.showwarning this log wraps, while it does
        self.muted = False  # a warning being shown was logged already
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", buffering=1)

    def line(self, text: str) -> None:
        text = text.rstrip()
        if self._file is not None and text:
            self._file.write(text + "\n")

    def header(self, resumed: bool, options: dict, facts: dict[str, str]) -> None:
        """The start of a session: when, fresh or resumed, the facts of the run, the options."""
        if self._file is None:
            return
        self._file.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resumed' if resumed else 'started'} ===\n")
        for key, value in facts.items():
            self._file.write(f"{key}: {value}\n")
        self._file.write("options:\n")
        self._file.write("".join(f"  {row}\n" for row in yaml.safe_dump(options, sort_keys=False).splitlines()))

    def tee(self) -> None:
        """From now on, lines written to sys.stdout and sys.stderr are kept too."""
        if self._file is None or self._tees:
            return
        for name in ("stdout", "stderr"):
            tee = _Tee(getattr(sys, name), self)
            setattr(sys, name, tee)
            self._tees.append((name, tee))
        self._shown_by = warnings.showwarning
        warnings.showwarning = self._show_warning

    def _show_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        for row in warnings.formatwarning(message, category, filename, lineno, line).splitlines():
            self.line(row)
        self.muted = True
        try:
            self._shown_by(message, category, filename, lineno, file, line)
        finally:
            self.muted = False

    def close(self, error: BaseException | None = None) -> None:
        """Stop teeing (restoring the streams) and close; ``error``: a last line ``error: ...``."""
        for name, tee in self._tees:
            if tee.pending:
                self.line(tee.pending.rsplit("\r", 1)[-1])
                tee.pending = ""
            if getattr(sys, name) is tee:
                setattr(sys, name, tee.stream)
        self._tees = []
        if self._shown_by is not None and warnings.showwarning == self._show_warning:
            warnings.showwarning = self._shown_by
        self._shown_by = None
        if error is not None:
            from realciao.errors import RealciaoError

            text = str(error) if isinstance(error, RealciaoError) else f"{type(error).__name__}: {error}"
            self.line(f"error: {' '.join(text.split())}")
        if self._file is not None:
            self._file.close()
            self._file = None


def versions() -> str:
    import accelerate
    import torch

    import realciao

    return f"realciao {realciao.__version__}, torch {torch.__version__}, accelerate {accelerate.__version__}"


def flat_options(options: dict, prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested options as dotted keys with scalar values (what trackers take as hyperparameters)."""
    import json

    flat: dict[str, bool | int | float | str] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not name.startswith("data.augment"):
            flat.update(flat_options(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat
