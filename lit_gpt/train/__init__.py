"""Fine-tuning: hyperparameters (`args`), the scripts' command line (`cli`), the training set and its batches
(`dataset`), one step and validation (`step`), the loop (`loop`), the saved run state (`state`), saving and
restoring training checkpoints for resume (`resume`), and the files a run writes besides weights (`reports`)."""
