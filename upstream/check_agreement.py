"""
Does ``pytorch_ood.detector.LINe`` compute what the authors' code computes? Run it on your own
features: a literal, per-sample transcription of the authors' algorithm (NumPy, float64: for the
class predicted for each sample, the activation mask over its contributions and the weight mask
over all K x D products, by quantile) against the module, mask for mask and score for score.

.. code-block:: bash

    python upstream/check_agreement.py features.pt   # a dict of tensors: x, y (fit), test, w, b
    python upstream/check_agreement.py               # random post-ReLU features instead

Uses ``pytorch_ood.detector.LINe`` where the installed pytorch-ood has it (the patch applied),
else this project's ``line_plugin.core.LINe`` (the same module).
"""

import sys

import numpy as np
import torch

try:
    from pytorch_ood.detector import LINe
except ImportError:
    from line_plugin.core import LINe

SETTINGS = [(0.9, 0.9, 1.0), (0.1, 0.9, 1.0), (0.1, 0.1, 0.8), (0.5, 0.5, None)]


def authors(x, y, w, b, test, p_a, p_w, clip):
    """per sample, as the authors' code: the masks of the predicted class, then the energy"""
    x, w, b, test = (np.asarray(t, dtype=np.float64) for t in (x, w, b, test))
    means = np.stack([x[y == c].mean(axis=0) for c in range(len(w))])
    contrib = w * means
    scores, masks = [], []
    for a in test:
        h = a if clip is None else np.minimum(a, clip)
        label = int(np.argmax(w @ h + b))
        m = contrib[label] > np.quantile(contrib[label], p_a) if p_a else np.ones(len(h), bool)
        products = np.abs(contrib[label])[None, :] * w
        mw = products > np.quantile(products, p_w) if p_w else np.ones(w.shape, bool)
        logits = (w * mw) @ (h * m) + b
        scores.append(-(logits.max() + np.log(np.exp(logits - logits.max()).sum())))
        masks.append((label, m, mw))
    return np.array(scores), masks


def main(path=None):
    if path:
        d = torch.load(path)
        x, y, test, w, b = (d[k] for k in ("x", "y", "test", "w", "b"))
    else:
        g = torch.Generator().manual_seed(0)
        w, b = torch.randn(10, 64, generator=g) * 0.1, torch.randn(10, generator=g)
        y = torch.arange(500) % 10
        x = torch.relu(torch.rand(10, 64, generator=g)[y] + torch.randn(500, 64, generator=g))
        test = torch.relu(torch.randn(200, 64, generator=g) + 0.3)
    print(
        f"{LINe.__module__}: {len(x)} fit and {len(test)} test features, K x D = {tuple(w.shape)}"
    )
    for p_a, p_w, clip in SETTINGS:
        det = LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip).fit_features(x, y)
        scores = det.predict_features(test.double()).numpy()
        expected, masks = authors(
            x.numpy(), y.numpy(), w.numpy(), b.numpy(), test.numpy(), p_a, p_w, clip
        )
        keep, threshold = det.activation_keep.numpy(), det.weight_threshold.numpy()
        weight = det.weight.numpy()
        same = all(
            np.array_equal(keep[label], m) and np.array_equal(weight > threshold[label], mw)
            for label, m, mw in masks
        )
        diff = np.abs(scores - expected).max()
        print(
            f"p_a={p_a} p_w={p_w} clip={clip}: masks identical: {same}, "
            f"largest score difference (float64): {diff:.1e}"
        )
        if not same or diff > 1e-9 * (1 + np.abs(expected).max()):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
