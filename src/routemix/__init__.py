"""routemix: multi-path networks with data-dependent routing, and neural mixture models
trained with batch-wise EM (NMM-EM), with the clustering methods they are measured against."""

__version__ = "0.1.0"
