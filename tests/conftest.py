import pathlib
import sys

# the tests import their helpers (reference implementation, shared fixtures) as plain modules
sys.path.insert(0, str(pathlib.Path(__file__).parent))
