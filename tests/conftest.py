"""
What every test shares: the helper modules on the path, the torch thread count (``--threads``),
CUDA tests skipped without a GPU, and the ``slow`` marks of the full tier.

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

#: tests of the full tier only, in files whose own marks do not say so (files of other layers'
#: owners): a file (every test in it) or a file and the names (without parameters) of its slow
#: tests. Measured with --durations on 2 cores; each takes from 10 s to minutes of CPU.
SLOW = {
    "adapter/test_timm_sweep.py": None,  # builds 20 timm models
    "adapter/test_probes.py": {"test_tresnet_splits_with_the_default_probe"},
    "plugin/test_distributed.py": None,  # spawns torch.distributed processes
    "realdata/test_golden.py": {"test_imagenet_sized_head"},  # K = 1000, D = 2048
    # a child interpreter; the quick tier keeps the patch's own tests (test_patch_own_tests_pass)
    "upstream/test_upstream.py": {"test_patched_package_imports"},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--threads",
        type=int,
        default=int(os.environ.get("LINE_TEST_THREADS", "1")),
        help="torch threads for the tests (default 1, or $LINE_TEST_THREADS; 0: torch's own)",
    )


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the marks
def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    cuda = torch.cuda.is_available()
    for item in items:
        path = pathlib.Path(str(item.path)).relative_to(TESTS).as_posix()
        if path in SLOW:
            names = SLOW[path]
            if names is None or item.originalname in names:
                item.add_marker(pytest.mark.slow)
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
