"""Every model call of the app on one thread: the one that loaded the models.

OpenMP (torch's CPU threads) gives each thread that starts parallel work a team of its own
threads. The app loads its models on the main thread and Gradio runs requests on its own
worker threads, so the process held two teams; with more OpenMP threads than cores, libgomp
stops spinning at its barriers and puts threads to sleep at every one instead. Measured with
``scripts/bench_app.py`` on 2 cores: about 18,000 voluntary context switches per
0.08-megapixel request against about 10 in ``realciao-upscale``, and the request 12-20 %
slower. Handing the work to the thread whose team already exists keeps one team.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

Result = TypeVar("Result")

POLL_SECONDS = 0.5  # how often the owner looks up from an empty queue (Ctrl+C is seen then)


class ModelThread:
    """Calls made from any thread, run on the thread that created this object (``serve``)."""

    def __init__(self):
        self.owner = threading.current_thread()
        self._calls: queue.SimpleQueue = queue.SimpleQueue()

    def __call__(self, function: Callable[..., Result], *args, **kwargs) -> Result:
        """Run ``function`` on the owner thread and wait for it; its exception is raised here.
        The caller's context variables go with it (Gradio finds a request's progress bar in them)."""
        if threading.current_thread() is self.owner:
            return function(*args, **kwargs)
        future: Future = Future()
        self._calls.put((future, contextvars.copy_context(), function, args, kwargs))
        return future.result()

    def serve(self, until: threading.Event | None = None) -> None:
        """On the owner thread: run the calls as they come, until ``until`` is set (or forever;
        Ctrl+C ends it, after telling a waiting caller)."""
        if threading.current_thread() is not self.owner:
            raise RuntimeError("ModelThread.serve runs on the thread that created it")
        while until is None or not until.is_set():
            try:
                future, context, function, args, kwargs = self._calls.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(context.run(function, *args, **kwargs))
            except Exception as error:  # the caller's to handle
                future.set_exception(error)
            except BaseException as error:  # Ctrl+C: the caller is told, and the app stops
                future.set_exception(error)
                raise


def call_here(function: Callable[..., Result], *args, **kwargs) -> Result:
    """Where no model thread is wanted (a page built for tests): call on the calling thread."""
    return function(*args, **kwargs)
