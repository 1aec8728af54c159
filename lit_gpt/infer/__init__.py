"""Inference: the one sampling loop, continuous batching over a pool of prompts (`sampling`), its KV-cache rows
(`cache`), answering prompts (`answer`), loading a model, a LoRA fine-tune merged into its base, for inference
(`load`), and the generate/ scripts' command line (`cli`)."""
