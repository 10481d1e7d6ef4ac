"""Shared test fixtures. ``../shared`` holds data that never enters the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped where none is available")
    # auto precision's measurements go to a cache of the test session's, never the user's
    import os
    import tempfile

    os.environ.setdefault(
        "REALCIAO_PRECISION_CACHE", str(Path(tempfile.mkdtemp(prefix="realciao-tests-")) / "precision.json")
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with the reason when it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the checkout); absent here")
    return path


@pytest.fixture(autouse=True)
def _messages_shown():
    """Library messages reach capsys as a command shows them (INFO on stdout, warnings on stderr),
    whatever stream or level an earlier test's command chose; a file handler a test left is closed."""
    from realciao.logs import show_messages, stop_logging_to

    logger = show_messages()
    before = list(logger.handlers)
    yield
    for handler in [h for h in logger.handlers if h not in before]:
        stop_logging_to(handler)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Tiny models run many small ops: one thread is faster, and robust on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
