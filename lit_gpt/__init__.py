"""lit_gpt: instruction fine-tuning of open LLMs, with the dataset side as a first-class citizen."""

from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer

__all__ = ["GPT", "Config", "Tokenizer"]


def __getattr__(name):  # Tokenizer pulls in sentencepiece/tokenizers; import it on first use only
    if name == "Tokenizer":
        return Tokenizer
    raise AttributeError(name)
