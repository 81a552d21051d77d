"""
How images are batched on their way through a backbone: the default batch size and number of
data-loading processes of :class:`line_plugin.Pipeline`, :mod:`line_plugin.features` and the
``--batch-size`` and ``--workers`` options of ``line-ood``. Torch-free, so that the command line
shows them in its help without loading torch.
"""

#: images per batch
DEFAULT_BATCH_SIZE = 250
#: data-loading worker processes (0: the images are read in the main process)
DEFAULT_WORKERS = 0
