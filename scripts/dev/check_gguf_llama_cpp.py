"""Check exported GGUF files in llama.cpp itself: the same greedy answer and logits as our model.

llama.cpp comes from PyPI's llama-cpp-python, which compiles it from source (minutes), so it lives in a venv of its
own and never in this project's install or CI:

    python -m venv /tmp/llamacpp-venv
    CMAKE_BUILD_PARALLEL_LEVEL=2 /tmp/llamacpp-venv/bin/pip install numpy llama-cpp-python
    python scripts/dev/check_gguf_llama_cpp.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \
        --llama_cpp_python /tmp/llamacpp-venv/bin/python

For each --types entry the checkpoint is exported (scripts/export_gguf.py's code) into --out_dir, and llama.cpp
(run by --llama_cpp_python) tokenizes the chat prompt, computes the logits of our prompt tokens and answers greedily;
the script prints llama.cpp's answer beside ours, whether the token ids agree and the largest logit difference.
Then llama.cpp answers once more through its own chat handling (the chat template stored in the file). Exit code 1
when an answer differs.
"""

import json
import subprocess
import importlib.util
import sys
from pathlib import Path


import numpy as np
import torch

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.gguf.export_model import export_gguf
from lit_gpt.infer.load import load
from lit_gpt.infer.sampling import generate
from lit_gpt.utils import UserError, check_typed_on_command_line, run_cli

DEFAULT_CHECKPOINT = Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct")
DEFAULT_PROMPT = "What is the capital of France?"
DEFAULT_LLAMA_CPP_PYTHON = Path("/tmp/llamacpp-venv/bin/python")

# run in the llama.cpp venv (numpy + llama_cpp only); request on stdin, result as JSON on stdout
LLAMA_CPP_PROGRAM = r"""
import json, sys
import numpy as np
from llama_cpp import Llama

req = json.load(sys.stdin)
llm = Llama(model_path=req["model_path"], n_ctx=512, logits_all=True, verbose=False, seed=0, n_threads=2)
tokenized = llm.tokenize(req["prompt_text"].encode("utf-8"), add_bos=True, special=True)
llm.reset()
llm.eval(req["prompt_ids"])
np.save(req["logits_path"], np.asarray(llm.scores[: llm.n_tokens], dtype=np.float32))
answer = []
for _ in range(req["max_new_tokens"]):
    token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    if token in req["stop_ids"]:
        break
    answer.append(token)
    llm.eval([token])
chat = llm.create_chat_completion(messages=[{"role": "user", "content": req["question"]}], temperature=0.0,
                                  top_k=1, max_tokens=req["max_new_tokens"])
print(json.dumps({"tokenized": tokenized, "answer_ids": answer,
                  "answer": llm.detokenize(answer).decode("utf-8", errors="replace"),
                  "chat_answer": chat["choices"][0]["message"]["content"]}))
"""


def main(*, checkpoint_dir: Path = DEFAULT_CHECKPOINT, llama_cpp_python: Path = DEFAULT_LLAMA_CPP_PYTHON,
         types: tuple = ("f16", "q8_0"), out_dir: Path = Path("out/gguf_check"), prompt: str = DEFAULT_PROMPT,
         max_new_tokens: int = 24) -> None:
    """Export checkpoint_dir as GGUF files and compare llama.cpp's greedy answers with ours.

    Args:
        checkpoint_dir: the checkpoint to export and compare
        llama_cpp_python: a Python interpreter with llama-cpp-python installed (typed on the command line, not
            read from a --config file: it is run)
        types: the GGUF types to check (scripts/export_gguf.py --type)
        out_dir: where the GGUF files and llama.cpp's logits go
        prompt: the question, in the checkpoint's chat format
        max_new_tokens: the length of the greedy answers
    """
    check_typed_on_command_line("llama_cpp_python", llama_cpp_python, DEFAULT_LLAMA_CPP_PYTHON)
    if not Path(llama_cpp_python).is_file():
        raise UserError(f"{llama_cpp_python}: no such Python; build llama-cpp-python into a venv first (see "
                        "this script's docstring)")
    loaded = load(checkpoint_dir, device="cpu", precision="32-true")
    model, tokenizer, style = loaded.model, loaded.tokenizer, loaded.style  # SmolLM2-Instruct: its ChatML format
    text = style.prompt(prompt)
    ids = tokenizer.encode(text)
    ours = generate(model, ids, max_new_tokens=max_new_tokens, temperature=0, eos_id=tokenizer.stop_ids).tolist()
    with torch.no_grad():
        our_logits = model(ids[None])[0].numpy()
    print(f"prompt ({len(ids)} tokens, {style.__class__.__name__} format): {text!r}")
    print(f"ours (float32 checkpoint): {tokenizer.decode(ours)!r}")
    same_everywhere = True
    for type in types:
        path = Path(out_dir) / f"{Path(checkpoint_dir).name}-{type.upper()}.gguf"
        export_gguf(checkpoint_dir, path, type)
        request = {"model_path": str(path.resolve()), "prompt_text": text, "prompt_ids": ids.tolist(),
                   "question": prompt, "max_new_tokens": max_new_tokens, "stop_ids": tokenizer.stop_ids,
                   "logits_path": str((Path(out_dir) / f"llama_cpp_logits_{type}.npy").resolve())}
        result = subprocess.run([str(llama_cpp_python), "-c", LLAMA_CPP_PROGRAM], input=json.dumps(request),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"llama.cpp failed on {path}: {result.stderr.strip().splitlines()[-1:]}")
        reply = json.loads(result.stdout.strip().splitlines()[-1])
        theirs = np.load(request["logits_path"])
        difference = float(np.abs(theirs - our_logits).max())
        agree = float((theirs.argmax(-1) == our_logits.argmax(-1)).mean())
        same = reply["answer_ids"] == ours
        same_everywhere &= same
        print(f"llama.cpp {type}: {reply['answer']!r} ({'same tokens as ours' if same else 'DIFFERENT from ours'})")
        print(f"  llama.cpp's tokenization of the prompt {'equals' if reply['tokenized'] == ids.tolist() else 'DIFFERS from'}"
              f" ours; prompt logits: max |difference| {difference:.4f}, argmax agreement {agree:.2f}")
        print(f"  llama.cpp's own chat handling (the file's chat template): {reply['chat_answer']!r}")
    if not same_everywhere:
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
