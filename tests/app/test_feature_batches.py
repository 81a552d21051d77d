"""
The one feature extractor: batch by batch (the pipeline's scoring), all at once (the benchmark's
cache), from a dataset or a data loader.
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from line_plugin.features import compute_features, feature_batches


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


def test_a_loader_is_read_as_it_is():
    x = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    loader = DataLoader(TensorDataset(x, torch.arange(10)), batch_size=3)
    batches = list(feature_batches(torch.nn.Identity(), loader, batch_size=100, progress=False))
    assert [len(z) for z, _ in batches] == [3, 3, 3, 1]  # the loader's batches, not 100
    assert torch.equal(torch.cat([z for z, _ in batches]), x)
