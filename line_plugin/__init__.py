"""
LINe (Leveraging Important Neurons) as a :mod:`pytorch_ood` detector for any timm backbone.
"""

__version__ = "0.1.0"
