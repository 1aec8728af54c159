"""The Hugging Face Hub: downloading model repos and dataset files (`download`), uploading a fine-tune
(`upload`) with its model card (`model_card`). Tokens are read, never printed or written."""
