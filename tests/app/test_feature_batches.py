"""Features batch by batch (the command line's scoring) and all at once (the benchmark's)."""

import torch
from torch.utils.data import TensorDataset

from line_plugin.evaluation.features import compute_features, feature_batches


def test_batches_come_in_order_and_concatenate_to_compute_features():
    x = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    y = torch.arange(10)
    encoder = torch.nn.Linear(3, 2)
    batches = list(feature_batches(encoder, TensorDataset(x, y), batch_size=4, progress=False))
    assert [len(z) for z, _ in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([labels for _, labels in batches]), y)
    z, labels = compute_features(encoder, TensorDataset(x, y), batch_size=4, progress=False)
    assert torch.equal(z, torch.cat([b for b, _ in batches])) and torch.equal(labels, y)
    assert not z.requires_grad and z.dtype == torch.float32
