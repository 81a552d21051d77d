import pathlib
import sys

# the tests import their helpers (reference implementation, synthetic problems, shared fixtures)
# as plain modules; the repository root is on the path too, so that processes spawned by a test
# find the test modules (pytest imports them as tests.<layer>.<module>)
TESTS = pathlib.Path(__file__).parent
sys.path.insert(0, str(TESTS))
sys.path.append(str(TESTS.parent))
