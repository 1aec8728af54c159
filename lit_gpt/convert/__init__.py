"""Checkpoint conversion between Hugging Face's layout and ours: the weight-name and config tables per model
family (`hf_mapping`) and the streaming conversion both ways (`hf`)."""
