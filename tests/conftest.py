"""
What every test shares: the helper modules on the path, the torch thread count (``--threads``),
and CUDA tests skipped without a GPU. Tests of the full tier carry ``slow`` in their own files.

``python -m pytest -q`` runs the quick tier (pyproject's ``-m 'not slow'``), ``python -m pytest
-q -m ""`` everything; ``--threads 2`` (or ``LINE_TEST_THREADS=2``) runs the tests on two torch
threads instead of one.
"""

import os
import pathlib
import sys

import pytest
import torch

# the tests import their helpers (reference implementation, synthetic problems, shared fixtures)
# as plain modules; the repository root is on the path too, so that processes spawned by a test
# find the test modules (pytest imports them as tests.<layer>.<module>)
TESTS = pathlib.Path(__file__).parent
sys.path.insert(0, str(TESTS))
sys.path.append(str(TESTS.parent))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--threads",
        type=int,
        default=int(os.environ.get("LINE_TEST_THREADS", "1")),
        help="torch threads for the tests (default 1, or $LINE_TEST_THREADS; 0: torch's own)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    cuda = torch.cuda.is_available()
    for item in items:
        if not cuda and "cuda" in item.keywords:
            item.add_marker(no_cuda)


@pytest.fixture(autouse=True, scope="session")
def torch_threads(request: pytest.FixtureRequest):
    """Small models and inputs: one thread is as fast, and immune to a busy machine."""
    threads = request.config.getoption("--threads")
    if threads < 0:
        raise pytest.UsageError(f"--threads must be 0 or more, got {threads}")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    yield threads or before
    torch.set_num_threads(before)
