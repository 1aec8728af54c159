"""The model card of an uploaded model: README.md with YAML metadata (what the Hub shows, filters and searches by)
and a body that says how the model was made.

The facts come from where the project already writes them, nothing is asked twice:
- a fine-tune's out_dir (`--run_dir`): hyperparameters.yaml (every setting, the base checkpoint_dir and data_dir),
  train_summary.json (steps, epochs, losses), lora_config.json, and data_manifest.json, the prepared data's
  manifest copied there at training time (else the manifest in data_dir, if it is still there);
- the manifest: the dataset's name, its fingerprint (of tokenizer, template, settings and source files), counts,
  sources, a Hub `dataset_id` it was read from, and for a mixture every input's name and fingerprint;
- scripts/evaluate.py's results.json (`EvalReport`): IFEval, reference loss and harness numbers, which also go into
  the metadata's `model-index` so that the Hub lists them as evaluation results.

A card written here starts its body with `CARD_MARKER`: a README.md carrying it may be rewritten, any other README.md
in the folder is the author's own and is uploaded as it is.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from lit_gpt.registry import name_to_config
from lit_gpt.file_names import DATA_MANIFEST_FILE, HYPERPARAMETERS_FILE, LIT_CONFIG_FILE, LORA_CONFIG_FILE, MANIFEST_FILE
from lit_gpt.utils import UserError
from lit_gpt.json_files import read_json

CARD_MARKER = "<!-- model card written by lit-gpt-data (scripts/upload.py); rerun it to update this file -->"
TRAIN_SUMMARY_FILE = "train_summary.json"
EVAL_REPORT_FILE = "results.json"
# hyperparameters.yaml also records where things were on the training machine: not settings, and local paths
LOCAL_PATH_KEYS = ("checkpoint_dir", "data_dir", "out_dir")


@dataclass
class RunFacts:
    """What a fine-tune's out_dir says about how the model was made."""

    method: str  # "lora" (the run wrote lora_config.json) or "full"
    base_model: Optional[str]  # a Hub repo id when the base checkpoint is known to come from one
    hyperparameters: dict  # the flat settings (no local paths)
    datasets: list = field(default_factory=list)  # one dict per prepared dataset (and mixture input)
    summary: Optional[dict] = None  # train_summary.json
    lora: Optional[dict] = None  # lora_config.json


def read_run(run_dir: "str | Path") -> RunFacts:
    """The facts of a fine-tune's out_dir (finetune/lora.py, finetune/full.py)."""
    run_dir = Path(run_dir)
    hp_file = run_dir / HYPERPARAMETERS_FILE
    if not hp_file.is_file():
        raise UserError(f"--run_dir {run_dir}: no {HYPERPARAMETERS_FILE}; pass the out_dir of a finetune/lora.py or "
                        "finetune/full.py run")
    text = hp_file.read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise UserError(f"{hp_file}: not valid YAML") from None
    lora = _read_json(run_dir / LORA_CONFIG_FILE)  # finetune/lora.py writes it beside the weights, full.py does not
    checkpoint_dir = Path(values["checkpoint_dir"]) if values.get("checkpoint_dir") else None
    manifest = _read_json(run_dir / DATA_MANIFEST_FILE)
    if manifest is None and values.get("data_dir"):
        manifest = _read_json(Path(values["data_dir"]) / MANIFEST_FILE)
    return RunFacts(method="lora" if lora is not None else "full", base_model=base_model_id(run_dir, checkpoint_dir),
                    hyperparameters={k: v for k, v in values.items() if k not in LOCAL_PATH_KEYS},
                    datasets=dataset_entries(manifest) if manifest else [],
                    summary=_read_json(run_dir / TRAIN_SUMMARY_FILE), lora=lora)


def base_model_id(run_dir: Path, checkpoint_dir: Optional[Path]) -> Optional[str]:
    """The base model's Hub id: the registry's for the model config's name, else ORG/NAME of a
    checkpoints/ORG/NAME folder (scripts/download.py's layout). None when neither says."""
    for directory in (run_dir, checkpoint_dir):
        config = _read_json(directory / LIT_CONFIG_FILE) if directory is not None else None
        if config and config.get("hf_repo_id"):
            return config["hf_repo_id"]
        if config and config.get("name") in name_to_config and name_to_config[config["name"]].get("hf_repo_id"):
            return name_to_config[config["name"]]["hf_repo_id"]
    if checkpoint_dir is not None and checkpoint_dir.parent.parent.name == "checkpoints":
        return f"{checkpoint_dir.parent.name}/{checkpoint_dir.name}"
    return None


def dataset_entries(manifest: dict) -> list:
    """One entry per prepared dataset the run trained on: the manifest's own and, for a mixture, each input's."""
    options = manifest.get("options") or {}
    entry = {"name": manifest.get("name"), "fingerprint": manifest.get("fingerprint"),
             "tokenizer_fingerprint": manifest.get("tokenizer_fingerprint"),
             "prompt_style": manifest.get("prompt_style"), "max_seq_length": manifest.get("max_seq_length"),
             "hub_dataset": options.get("dataset_id"), "counts": _kept(manifest.get("counts"), ("train", "test")),
             "sources": manifest.get("sources")}
    entries = [{k: v for k, v in entry.items() if v not in (None, {}, [])}]
    for item in manifest.get("inputs") or []:  # a mixture (scripts/mix_datasets.py)
        entries.append({k: v for k, v in {"name": item.get("name"), "fingerprint": item.get("fingerprint"),
                                          "mixture_input_of": manifest.get("name")}.items() if v})
    return entries


def read_eval_report(path: "str | Path") -> dict:
    """scripts/evaluate.py's results.json (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / EVAL_REPORT_FILE
    report = _read_json(path)
    if report is None:
        raise UserError(f"--eval_report {path}: no evaluation report there (scripts/evaluate.py writes "
                        f"{EVAL_REPORT_FILE} into its --out_dir)")
    return report


def eval_metrics(report: dict) -> list:
    """(task, metric, value) of every number in an evaluation report, as the card lists them."""
    rows = []
    for metric in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
                   "inst_level_loose_acc"):
        if (report.get("ifeval") or {}).get(metric) is not None:
            rows.append(("ifeval", metric, float(report["ifeval"][metric])))
    reference = report.get("reference_loss") or {}
    for metric in ("mean_nll", "perplexity"):
        if reference.get(metric) is not None:
            rows.append(("reference_loss", metric, float(reference[metric])))
    for task, metrics in (report.get("harness") or {}).items():
        for metric, value in (metrics or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append((task, metric, float(value)))
    return rows


def card_metadata(repo_id: str, model_format: str, run: Optional[RunFacts], eval_report: Optional[dict],
                  license: Optional[str], base_model: Optional[str]) -> dict:
    """The YAML header. `datasets` holds Hub dataset ids only (the Hub links them); every prepared dataset, with its
    fingerprint, is under `lit_gpt_data`, which the Hub keeps as free-form metadata."""
    base_model = base_model or (run.base_model if run else None)
    meta: dict = {}
    if base_model:
        meta["base_model"] = base_model
    if license:
        meta["license"] = license
    meta["library_name"] = "gguf" if model_format == "gguf" else "transformers"
    tags = ["lit-gpt-data", "text-generation", "gguf" if model_format == "gguf" else "safetensors"]
    if run and run.method:
        tags.append("lora" if run.method == "lora" else "full-fine-tune")
    meta["tags"] = tags
    meta["pipeline_tag"] = "text-generation"
    hub_datasets = sorted({d["hub_dataset"] for d in (run.datasets if run else []) if d.get("hub_dataset")})
    if hub_datasets:
        meta["datasets"] = hub_datasets
    if run:
        meta["lit_gpt_data"] = {"method": run.method, "datasets": run.datasets,
                                "hyperparameters": run.hyperparameters}
    if eval_report:
        rows = eval_metrics(eval_report)
        if rows:
            meta["model-index"] = [{"name": repo_id.split("/")[-1], "results": [
                {"task": {"type": "text-generation"}, "dataset": {"name": task, "type": task},
                 "metrics": [{"type": metric, "value": round(value, 6)} for t, metric, value in rows if t == task]}
                for task in dict.fromkeys(t for t, _, _ in rows)]}]
    return meta


def render_card(repo_id: str, model_format: str, files: list, run: Optional[RunFacts] = None,
                eval_report: Optional[dict] = None, license: Optional[str] = None,
                base_model: Optional[str] = None) -> str:
    """README.md: the YAML metadata between `---` lines, then the facts in Markdown."""
    meta = card_metadata(repo_id, model_format, run, eval_report, license, base_model)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", CARD_MARKER, "",
             f"# {repo_id.split('/')[-1]}", ""]
    how = {"lora": "LoRA fine-tune (merged into the base weights)", "full": "full fine-tune"}.get(
        run.method if run else None, "model")
    base = meta.get("base_model")
    lines.append(f"A {how}{f' of [{base}](https://huggingface.co/{base})' if base else ''}, trained with "
                 "lit-gpt-data and uploaded by its `scripts/upload.py`, "
                 f"in {'GGUF' if model_format == 'gguf' else 'Hugging Face transformers'} format.")
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in files) + "."]
    if model_format == "hf":
        lines += ["", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```"]
    if run and run.datasets:
        lines += ["", "## Training data", "",
                  "| dataset | fingerprint | train | test | prompt style | Hub dataset |", "|---|---|---|---|---|---|"]
        for d in run.datasets:
            name = d.get("name", "?") + (f" (in {d['mixture_input_of']})" if d.get("mixture_input_of") else "")
            counts = d.get("counts") or {}
            lines.append(f"| {name} | `{d.get('fingerprint', '')}` | {counts.get('train', '')} | "
                         f"{counts.get('test', '')} | {d.get('prompt_style', '')} | {d.get('hub_dataset', '')} |")
        lines += ["", "The fingerprint is lit-gpt-data's hash of the prepared data's source files, tokenizer, prompt "
                  "template and settings: the same fingerprint means the same training examples."]
    if run:
        lines += ["", "## Training", "", "| hyperparameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in run.hyperparameters.items()]
        if run.summary:
            s = run.summary
            done = [f"{s['steps']} steps" if s.get("steps") is not None else None,
                    f"{s['epochs']:.2f} epochs" if s.get("epochs") is not None else None,
                    f"final train loss {s['final_train_loss']:.4f}" if s.get("final_train_loss") is not None else None,
                    f"final validation loss {s['final_val_loss']:.4f}" if s.get("final_val_loss") is not None
                    else None]
            lines += ["", "Result: " + ", ".join(x for x in done if x) + "."]
    if eval_report:
        rows = eval_metrics(eval_report)
        if rows:
            lines += ["", "## Evaluation", "", f"scripts/evaluate.py on {eval_report.get('model', 'this model')} "
                      f"(prompt style {eval_report.get('prompt_style', '?')}):", "",
                      "| task | metric | value |", "|---|---|---|"]
            lines += [f"| {t} | {m} | {v:.4f} |" for t, m, v in rows]
    return "\n".join(lines) + "\n"


def _kept(d: Optional[dict], keys: tuple) -> Optional[dict]:
    return {k: d[k] for k in keys if k in d} if d else None


def _read_json(path: Path) -> Optional[dict]:
    """The JSON object in `path`, or None when there is none or it cannot be read (`read_json`): the card leaves
    that part out."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except UserError:
        return None
