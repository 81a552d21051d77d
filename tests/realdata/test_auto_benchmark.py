"""
The ``LINe (auto)`` row of the comparison: its choice is made on ID data alone, so it is the same
whichever OOD test sets the run evaluates on.
"""

import pytest

from line_plugin.evaluation import Sizes, compare_detectors

pytestmark = pytest.mark.slow


def test_auto_choice_does_not_depend_on_the_ood_test_sets(tmp_path):
    def run(ood):
        return compare_detectors(
            "resnet18",
            Sizes.tiny(),
            detectors=["LINe"],
            tuned=False,
            ood=ood,
            features_dir=tmp_path / "features",
            progress=False,
        )

    a, b = run(["mnist"]), run(["dtd", "fashion_mnist"])
    assert a.meta["auto"] == b.meta["auto"]
    assert a.meta["auto"]["held_out"] == Sizes.tiny().val_id
    assert {r["dataset"] for r in b.records if r["detector"] == "LINe (auto)"} == {
        "dtd",
        "fashion_mnist",
    }
