"""train_realciao.py killed (SIGKILL) or paused at one point of its checkpoint writing, for the
reliability tests: ``python -m tests.crash_run POINT:ITERATION[:SECONDS] -- TRAIN_ARGS...``.

The points, each the moment just before a write of ``realciao.train.state``:

- ``inside-temporary``: checkpoint ITERATION's shared files are written, this process's own
  (``rank_N``) not yet, nor the manifest;
- ``before-rename``: checkpoint ITERATION is complete under its temporary name, not published;
- ``prune``: checkpoint ITERATION is about to be deleted (a newer one was published);
- ``release``: the release weights are written under their temporary name, not renamed
  (ITERATION: the run's last).

With SECONDS the run pauses there that long instead (to try a second run beside it). The
production code has no hooks for this: the wrapper replaces the state module's functions.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from realciao.train import state


def stop(seconds: float | None) -> None:
    if seconds is None:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)


def arm(point: str, iteration: int, seconds: float | None) -> None:
    if point == "inside-temporary":
        save_tree = state.save_tree

        def before_own_file(tree, path: Path) -> None:
            if path.name.startswith("rank_") and path.parent == state.temporary_dir(
                path.parent.parent, iteration
            ):
                stop(seconds)
            save_tree(tree, path)

        state.save_tree = before_own_file
    elif point == "before-rename":
        publish = state.publish

        def before_publish(temporary: Path, number: int) -> Path:
            if number == iteration:
                stop(seconds)
            return publish(temporary, number)

        state.publish = before_publish
    elif point == "prune":
        remove_checkpoint = state.remove_checkpoint

        def before_removal(folder: Path, models_dir: Path, number: int) -> None:
            if number == iteration:
                stop(seconds)
            remove_checkpoint(folder, models_dir, number)

        state.remove_checkpoint = before_removal
    elif point == "release":
        write_release = state.write_release

        def after_pending_file(model, path: Path) -> Path:
            save_generator = state.save_generator

            def then_stop(model, pending: Path) -> Path:
                written = save_generator(model, pending)
                stop(seconds)
                return written

            state.save_generator = then_stop
            try:
                return write_release(model, path)
            finally:
                state.save_generator = save_generator

        state.write_release = after_pending_file
    else:
        raise SystemExit(f"tests.crash_run: unknown point {point!r}")


def main(argv: list[str]) -> int:
    where, separator, *train_args = argv
    if separator != "--":
        raise SystemExit("usage: python -m tests.crash_run POINT:ITERATION[:SECONDS] -- TRAIN_ARGS...")
    point, iteration, *pause = where.split(":")
    arm(point, int(iteration), float(pause[0]) if pause else None)
    from realciao.cli.train import main as train

    return train(train_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
