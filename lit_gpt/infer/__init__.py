"""Inference: the one sampling loop (`sampling`), answering prompts (`answer`), and loading a model, a LoRA fine-tune
merged into its base, for inference (`load`)."""
