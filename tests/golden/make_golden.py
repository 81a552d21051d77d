"""
Regenerate ``golden.pt``: what LINe computed at commit 57bd2ad (version 0.1, before the core /
plugin redesign), so that tests/realdata/test_golden.py can hold every later version to it.

Run from a checkout of that commit (the inputs are stored, so later code never re-extracts them)::

    git worktree add /tmp/v01 57bd2ad
    LINE_OOD_DATA=../shared/data LINE_OOD_MODELS=../shared/models PYTHONPATH=/tmp/v01 \\
        python tests/golden/make_golden.py tests/golden/golden.pt

Inputs: penultimate features of the four shared CIFAR-10 models (fit subset, ID test and DTD
images, stored as float16 and used as float32), and a synthetic ImageNet-sized head
(K = 1000, D = 2048, generated from NumPy's seeded generator) that takes the selection route of
the weight thresholds. Outputs per setting: class means, activation masks and weight thresholds
(as SHA-256 digests of the tensors' bytes), the clipping threshold, and the scores of float32
and float64 features.
"""

import hashlib
import sys

import numpy as np
import torch

from line_plugin import LINe

SETTINGS = {
    "cifar10": dict(p_w=0.9, p_a=0.9, clip=1.0),
    "cifar100": dict(p_w=0.9, p_a=0.1, clip=1.0),
    "imagenet": dict(p_w=0.1, p_a=0.1, clip=0.8),
    "off": dict(p_w=0.0, p_a=0.0, clip=None),
    "weights_only": dict(p_w=0.5, p_a=0.0, clip=None),
    "clip_quantile": dict(p_w=0.5, p_a=0.5, clip_quantile=0.9),
}
MODELS = ["densenet_bc100", "resnet18", "vit_tiny", "convnext_atto"]


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def outputs(w, b, x_fit, y_fit, x_test, settings):
    out = {}
    for name, hp in settings.items():
        det = LINe(None, w, b, **hp).fit_features(x_fit, y_fit)
        out[name] = {
            "hyperparameters": hp,
            "clip": det.clip,
            "class_means_sha256": digest(det.class_means),
            "activation_keep_sha256": digest(det.activation_keep),
            "weight_threshold_sha256": digest(det.weight_threshold),
            "scores32": det.predict_features(x_test.float()).clone(),
            "scores64": det.predict_features(x_test.double()).clone(),
        }
    return out


def shared_model(name):
    from line_plugin import data, zoo  # the application of version 0.1
    from line_plugin.evaluation.features import compute_features

    zm = zoo.load_model(name)
    from line_plugin.adapter import split_model

    enc, w, b = split_model(zm.model)

    def feats(ds):
        return compute_features(enc, ds, batch_size=250, progress=False)

    train = data.subset(data.CIFAR10JPEG(split="train", transform=zm.transform), 500, seed=0)
    test = data.subset(data.CIFAR10JPEG(split="test", transform=zm.transform), 100, seed=0)
    dtd = data.subset(data.ood_set("dtd", transform=zm.transform), 100, seed=0)
    x_fit, y_fit = feats(train)
    x_test = torch.cat([feats(test)[0], feats(dtd)[0]])
    x_fit, x_test = x_fit.half(), x_test.half()  # stored so; used as float32
    entry = {
        "weight": w.detach().clone(),
        "bias": b.detach().clone(),
        "x_fit": x_fit,
        "y_fit": y_fit.clone(),
        "x_test": x_test,
    }
    entry["outputs"] = outputs(w, b, x_fit.float(), y_fit, x_test, SETTINGS)
    return entry


def imagenet_inputs():
    """K = 1000, D = 2048, from NumPy's seeded generator: w, b, x, y, x_test"""
    rng = np.random.default_rng(0)
    k, d, n = 1000, 2048, 2000
    w = torch.from_numpy(rng.normal(0, 0.02, (k, d)).astype(np.float32))
    b = torch.from_numpy(rng.normal(0, 0.1, k).astype(np.float32))
    x = torch.from_numpy(np.maximum(rng.normal(0.3, 0.5, (n, d)), 0).astype(np.float32))
    y = torch.arange(n) % k
    x_test = torch.from_numpy(np.maximum(rng.normal(0.3, 0.6, (64, d)), 0).astype(np.float32))
    return w, b, x, y, x_test


def imagenet_scale():
    w, b, x, y, x_test = imagenet_inputs()
    settings = {k_: SETTINGS[k_] for k_ in ("imagenet", "cifar10")}
    result = {"inputs_sha256": digest(torch.cat([w.flatten(), b, x.flatten(), x_test.flatten()]))}
    for name, hp in settings.items():
        det = LINe(None, w, b, **hp).fit_features(x, y)
        result[name] = {
            "hyperparameters": hp,
            "activation_keep_sha256": digest(det.activation_keep),
            "weight_threshold_sha256": digest(det.weight_threshold),
            "scores64": det.predict_features(x_test.double()).clone(),
        }
    return result


def main(path):
    torch.set_num_threads(1)
    golden = {"commit": "57bd2ad", "models": {}, "imagenet_scale": imagenet_scale()}
    for name in MODELS:
        golden["models"][name] = shared_model(name)
        print("done", name, flush=True)
    torch.save(golden, path)


if __name__ == "__main__":
    main(sys.argv[1])
