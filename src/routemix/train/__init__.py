"""Training: Lightning modules, loaders, trainers, checkpoints. The one place that knows them."""
