"""Training: Lightning modules, loaders, trainers, checkpoints. The one place that knows them."""

# Training batches between two checkpoints inside an epoch, for every trainer (routemix.train.resumable);
# here rather than there so that building the command line's help does not import Lightning.
CHECKPOINT_EVERY = 1000
