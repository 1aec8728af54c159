"""One Tokenizer over SentencePiece (`tokenizer.model`) and HF tokenizers (`tokenizer.json`) files.

BOS/EOS come from `tokenizer_config.json` and `generation_config.json`. Special tokens are added by us, never by the
backend, so a BOS is never doubled and prompt/response pieces can be tokenized without surprises.
"""

import hashlib
import json
from pathlib import Path
from typing import Iterable, Optional, Union

import torch

from lit_gpt.utils import UserError
from lit_gpt.json_files import read_json

# the special tokens that end an answer in the chat formats of lit_gpt.prompts.styles (each style's `end_tokens`; a test
# keeps the two in step): generation stops at whichever of them the vocabulary has
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


class Tokenizer:
    def __init__(self, checkpoint_dir: "str | Path") -> None:
        checkpoint_dir = Path(checkpoint_dir)
        if not checkpoint_dir.is_dir():
            raise UserError(f"{checkpoint_dir}: tokenizer directory not found")
        self.checkpoint_dir = checkpoint_dir
        config = _read_json(checkpoint_dir / "tokenizer_config.json")
        generation_config = _read_json(checkpoint_dir / "generation_config.json")
        _check_tokenizer_config(config, checkpoint_dir / "tokenizer_config.json")

        if (checkpoint_dir / "tokenizer.model").is_file():
            import sentencepiece as spm

            self.backend = "sentencepiece"
            self.model_file = checkpoint_dir / "tokenizer.model"
            try:
                self.processor = spm.SentencePieceProcessor(model_file=str(self.model_file))
            except Exception as e:
                raise UserError(f"{self.model_file}: not a SentencePiece model ({e})") from None
            self.vocab_size = self.processor.vocab_size()
        if (checkpoint_dir / "tokenizer.json").is_file() and (
                not (checkpoint_dir / "tokenizer.model").is_file() or self._lacks_added_tokens(config)):
            # tokenizer.json alone, or it holds tokens tokenizer.model does not (Phi-3's <|user|>, <|end|>, ...)
            from tokenizers import Tokenizer as HFTokenizer

            self.backend = "huggingface"
            self.model_file = checkpoint_dir / "tokenizer.json"
            try:
                self.processor = HFTokenizer.from_file(str(self.model_file))
            except Exception as e:
                raise UserError(f"{self.model_file}: not a tokenizers file ({e})") from None
            # some tokenizer.json files ship with truncation/padding switched on; we want every token, unpadded
            self.processor.no_truncation()
            self.processor.no_padding()
            self.vocab_size = self.processor.get_vocab_size(with_added_tokens=True)
        elif not (checkpoint_dir / "tokenizer.model").is_file():
            raise UserError(f"{checkpoint_dir}: no tokenizer.model or tokenizer.json; "
                            "download the tokenizer with `python scripts/download.py --repo_id ORG/NAME --tokenizer_only`")

        _check_generation_config(generation_config, checkpoint_dir / "generation_config.json", self.vocab_size)
        self._check_named_tokens(config, checkpoint_dir / "tokenizer_config.json")
        self.bos_id = self._special_id(config.get("bos_token"), generation_config.get("bos_token_id"))
        eos = generation_config.get("eos_token_id")
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        config_eos = self._special_id(config.get("eos_token"), None)
        self.eos_id = config_eos if config_eos is not None else (eos_ids[0] if eos_ids else None)
        # every id that ends a generated answer: the configured EOS, generation_config's extra ones and the
        # end-of-turn token of the chat formats this vocabulary has (a checkpoint whose generation_config.json
        # lists only <|endoftext|> still stops at <|end|>)
        end_of_turn = [self.token_to_id(token) for token in END_OF_TURN_TOKENS]
        self.stop_ids = list(dict.fromkeys([i for i in [self.eos_id, *eos_ids, *end_of_turn] if i is not None]))
        self.use_bos = self._uses_bos(config)
        self.chat_template = config.get("chat_template")
        if self.chat_template is None and (checkpoint_dir / "chat_template.jinja").is_file():
            self.chat_template = (checkpoint_dir / "chat_template.jinja").read_text()

    def _lacks_added_tokens(self, config: dict) -> bool:
        """Whether tokenizer_config.json's added tokens include some the SentencePiece model does not have."""
        added = config.get("added_tokens_decoder") or {}
        return any(self.processor.piece_to_id(entry.get("content", "")) != int(i)
                   for i, entry in added.items() if isinstance(entry, dict) and str(i).isdigit())

    # ---- ids of special tokens -------------------------------------------------------------------------------
    def _check_named_tokens(self, config: dict, path: Path) -> None:
        """tokenizer_config.json's bos_token/eos_token must be tokens of the vocabulary: a name it lacks would leave
        the id to generation_config.json (or none) without a word, training and stopping at another token."""
        for key in ("bos_token", "eos_token"):
            token = config.get(key)
            content = token.get("content") if isinstance(token, dict) else token
            if content and self.token_to_id(content) is None:
                raise UserError(f"{path}: {key} {content!r} is not a token of {self.model_file.name}; set {key} to "
                                "one of its tokens (or null) or download the tokenizer again")

    def token_to_id(self, token: str) -> Optional[int]:
        if self.backend == "sentencepiece":
            i = self.processor.piece_to_id(token)
            return None if i == self.processor.unk_id() and token != self.processor.id_to_piece(i) else i
        return self.processor.token_to_id(token)

    def id_to_token(self, i: int) -> str:
        return self.processor.id_to_piece(i) if self.backend == "sentencepiece" else self.processor.id_to_token(i)

    def _special_id(self, token, fallback_id) -> Optional[int]:
        if isinstance(token, dict):  # {"content": "<s>", ...} in older tokenizer_config files
            token = token.get("content")
        if token:
            i = self.token_to_id(token)
            if i is not None:
                return i
        return fallback_id

    def _uses_bos(self, config: dict) -> bool:
        if "add_bos_token" in config:
            return bool(config["add_bos_token"]) and self.bos_id is not None
        if self.backend == "sentencepiece":
            return self.bos_id is not None  # Llama-style models are trained with a leading BOS
        post = json.loads(self.processor.to_str()).get("post_processor") or {}
        return self.bos_id is not None and self.id_to_token(self.bos_id) in json.dumps(post.get("single", []))

    # ---- encode / decode ------------------------------------------------------------------------------------
    def encode(self, text: str, bos: Optional[bool] = None, eos: bool = False,
               device: Optional[torch.device] = None) -> torch.Tensor:
        """Token ids of `text`. bos=None adds BOS iff the model uses one; a text that already starts with BOS keeps one."""
        ids = self.encode_ids(text)
        if (self.use_bos if bos is None else bos) and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
        if eos and self.eos_id is not None:
            ids = ids + [self.eos_id]
        return torch.tensor(ids, dtype=torch.long, device=device)

    def encode_ids(self, text: str) -> list[int]:
        """Plain ids, no BOS/EOS added."""
        if self.backend == "sentencepiece":
            return self.processor.encode(text)
        return self.processor.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Plain ids of many texts at once (multi-threaded in both backends)."""
        if self.backend == "sentencepiece":
            return self.processor.encode(list(texts))
        return [e.ids for e in self.processor.encode_batch(list(texts), add_special_tokens=False)]

    def encode_with_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """For each text, its ids and each token's (start, end) character span in the text. The data pipeline uses
        the spans to decide which tokens belong to a response, after tokenizing the whole conversation in one go."""
        if self.backend == "huggingface":
            return [(e.ids, list(e.offsets)) for e in self.processor.encode_batch(list(texts), add_special_tokens=False)]
        out = []
        for text, proto in zip(texts, self.processor.encode(list(texts), return_type="proto")):
            byte_to_char = _byte_to_char_index(text)
            out.append(([p.id for p in proto.pieces],
                        [(byte_to_char[p.begin], byte_to_char[p.end]) for p in proto.pieces]))
        return out

    def decode(self, ids: Union[torch.Tensor, Iterable[int]], skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if self.backend == "sentencepiece":
            if skip_special_tokens:
                ids = [i for i in ids if not self.processor.is_control(i)]
            return self.processor.decode(ids)
        return self.processor.decode(ids, skip_special_tokens=skip_special_tokens)

    @property
    def fingerprint(self) -> str:
        """Hash of the tokenizer file and the BOS/EOS policy: prepared data records it to detect a stale tokenizer."""
        h = hashlib.sha256(self.model_file.read_bytes())
        h.update(json.dumps([self.bos_id, self.eos_id, self.use_bos]).encode())
        return h.hexdigest()[:16]


def _read_json(path: Path) -> dict:
    return read_json(path, "tokenizer config", fix="download the tokenizer again") if path.is_file() else {}


def _check_tokenizer_config(config: dict, path: Path) -> None:
    """The fields of tokenizer_config.json we use, of the types they must have (one line naming the field)."""
    for key in ("bos_token", "eos_token"):
        token = config.get(key)
        content = token.get("content") if isinstance(token, dict) else token
        no_content = isinstance(token, dict) and "content" not in token
        if no_content or (content is not None and not isinstance(content, str)):
            raise UserError(f"{path}: {key} = {token!r}: must be a token's text (or {{\"content\": text}}); download "
                            "the tokenizer again")
    added = config.get("added_tokens_decoder")
    if added is not None and not (isinstance(added, dict) and all(
            str(i).isdigit() and isinstance(entry, dict) and isinstance(entry.get("content"), str)
            for i, entry in added.items())):
        raise UserError(f"{path}: added_tokens_decoder must map token ids to {{\"content\": text, ...}}; download the "
                        "tokenizer again")
    for key in ("add_bos_token", "add_eos_token"):
        if key in config and not isinstance(config[key], bool):
            raise UserError(f"{path}: {key} = {config[key]!r}: must be true or false; download the tokenizer again")
    template = config.get("chat_template")
    if template is not None and not isinstance(template, (str, list)):
        raise UserError(f"{path}: chat_template must be a template text; download the tokenizer again")


def _check_generation_config(config: dict, path: Path, vocab_size: int) -> None:
    """bos/eos/pad_token_id of generation_config.json: ids (eos: also a list of ids) within the vocabulary."""
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = config.get(key)
        ids = value if isinstance(value, list) and key == "eos_token_id" else [value] if value is not None else []
        if not all(type(i) is int and 0 <= i < vocab_size for i in ids):
            raise UserError(f"{path}: {key} = {value!r}: must be a token id from 0 to {vocab_size - 1} (the "
                            "vocabulary's size); download the tokenizer again")


def _byte_to_char_index(text: str) -> "list[int] | range":
    """index[b] = character index that byte b of text's UTF-8 encoding belongs to (with one entry past the end)."""
    if text.isascii():  # one byte per character, the identity: skips the per-character loop for most texts
        return range(len(text) + 1)
    index = []
    for i, ch in enumerate(text):
        index.extend([i] * len(ch.encode("utf-8")))
    index.append(len(text))
    return index
