"""Inference: the one sampling loop (`sampling`), answering prompts (`answer`), loading a model, a LoRA fine-tune
merged into its base, for inference (`load`), and the generate/ scripts' command line (`cli`)."""
