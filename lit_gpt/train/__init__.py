"""Fine-tuning: hyperparameters (`args`), the scripts' command line (`cli`), the training set and its batches
(`dataset`), one step and validation (`step`), the loop (`loop`), the saved run state (`state`), checkpoints and
resume (`checkpointing`), and the files a run writes besides weights (`reports`)."""
