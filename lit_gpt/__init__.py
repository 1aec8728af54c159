"""lit_gpt: instruction fine-tuning of open LLMs, with the dataset side as a first-class citizen.

The core a reader needs first lives at this level: `config` (+ `registry` of known models), `model` (GPT, plain
PyTorch), `lora`, `tokenizer`, `checkpoint` (a checkpoint dir: load and save), `precision`, `fused_loss`,
`file_names` and `utils`. Features are subpackages: `data`, `train`, `infer`, `eval`, `quality`, `studies`,
`prompts`, `convert`, `gguf`, `hub`.
"""

from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer

__all__ = ["GPT", "Config", "Tokenizer"]
