"""What training needs besides the model: the data feed, per-epoch history, resuming, epoch
timings, and the estimate of how long it will take."""
