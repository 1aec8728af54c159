"""A comparison's own settings (`StudySettings`: scripts/compare_datasets.py has a flag per field, one default
each); the training hyperparameters are finetune/<method>.py's, checked in `lit_gpt.studies.compare`."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from lit_gpt.data.preferences import PREFERENCE_FORMAT
from lit_gpt.data.prepared import INSTRUCTION_FORMAT
from lit_gpt.studies.analysis import check_primary_metric
from lit_gpt.train.args import NOT_FOR_PAIRS, PREFERENCE_LOSSES
from lit_gpt.utils import UserError

def _setting(default, help: str):
    return field(default=default, metadata={"help": help})


def _mutable_setting(default: "list | dict", help: str):
    """A list or dict setting: each StudySettings gets its own copy of the default."""
    return field(default_factory=lambda: type(default)(default), metadata={"help": help})


@dataclass
class StudySettings:
    """A comparison's own settings, one default each (scripts/compare_datasets.py has a flag per field); the training
    hyperparameters are finetune/<method>.py's (TrainArgs, LoRAConfig), the same for every variant."""

    out_dir: Path = _setting(Path("out/compare"), "one subdirectory per variant, plus comparison.md/.png/.json")
    orders: list[str] = _mutable_setting(["shuffle"], "training orders to compare, e.g. shuffle by_length_asc")
    epochs: list[Optional[int]] = _mutable_setting([None], "epoch counts to compare, e.g. 1 3 (None: "
                                                           "finetune/<method>.py's; with --max_iters alone, that many "
                                                           "steps)")
    seeds: list[int] = _mutable_setting([1337, 1338, 1339], "one run per variant per seed (LoRA init, dropout, data "
                                                            "order, the draw of --draw_rows)")
    aa_control: bool = _setting(True, "train the baseline again with as many other seeds (the A/A arm) and check "
                                      "that the statistics do not call it different")
    primary_metric: str = _setting("answer_nll", "the one metric every variant is tested on against the first: "
                                                 "ifeval_prompt_loose, ifeval_prompt_strict (_no_echo: echoes "
                                                 "fail), answer_nll, answer_nll_no_eos, answer_nll:<reference set>")
    draw_rows: list[int] = _mutable_setting([], "per data dir, training examples each run draws from it with its seed "
                                             "(0: all); empty: no draws")
    token_budget: Optional[int] = _setting(None, "train every run for as many steps as its examples take to reach "
                                                 "this many tokens (instead of --max_iters)")
    eval_path: Optional[Path] = _setting(None, "held-out set: a prepared data directory (its test.pt) or a JSON/JSONL "
                                               "file of instructions (with or without answers); None: the union of "
                                               "the variants' test sets")
    reference_sets: dict[str, Path] = _mutable_setting({}, "more answer styles for the reference loss, name -> file or "
                                                   "prepared dir, e.g. '{\"gpt4\": \"../shared/datasets/alpaca_gpt4/"
                                                   "sample_999.json\"}'")
    base_row: bool = _setting(False, "also evaluate the base checkpoint untrained")
    reference_checkpoint_dir: Optional[Path] = _setting(None, "also evaluate this instruction-tuned model, in its own "
                                                              "chat format (e.g. SmolLM2-135M-Instruct)")
    judge_checkpoint_dir: Optional[Path] = _setting(None, "a model that judges answers pairwise (win rate against "
                                                          "the first variant)")
    method: Literal["lora", "full"] = _setting("lora", "lora or full fine-tuning (finetune/lora.py or "
                                                       "finetune/full.py defaults)")
    preference_loss: Optional[str] = _setting(None, "train on preference pairs (data dirs from "
                                                    "scripts/prepare_preferences.py) with this loss of "
                                                    "finetune/dpo.py: dpo, ipo, simpo or orpo; None: instruction "
                                                    "tuning")
    eval_prompts: int = _setting(40, "held-out prompts answered greedily (EOS rate, judge)")
    eval_examples: int = _setting(200, "answers with a reference scored for the loss, per answer style")
    max_new_tokens: int = _setting(128, "answer length limit for the EOS rate")
    ifeval_prompts: int = _setting(0, "IFEval prompts each run answers, a seeded random sample (0: none; -1: all 541)")
    ifeval_max_new_tokens: int = _setting(1280, "IFEval's answer budget (1280 as lm-eval)")
    eval_batch_size: int = _setting(16, "prompts generated together, examples per loss batch")
    resume: bool = _setting(False, "reuse finished runs (and their evaluations) in out_dir, continue unfinished ones")
    seed: int = _setting(42, "seed of the held-out sample (answered prompts, scored answers)")

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.eval_path = Path(self.eval_path) if self.eval_path is not None else None
        self.reference_sets = {str(k): Path(v) for k, v in (self.reference_sets or {}).items()}
        for name in ("judge_checkpoint_dir", "reference_checkpoint_dir"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        if self.method not in ("lora", "full"):
            raise UserError(f"--method {self.method!r}: use lora or full")
        if (self.eval_prompts < 0 or self.eval_examples < 0 or self.max_new_tokens < 1 or self.ifeval_prompts < -1
                or self.eval_batch_size < 1 or self.ifeval_max_new_tokens < 1):
            raise UserError("--eval_prompts and --eval_examples must be >= 0, --ifeval_prompts >= -1 (-1: all), "
                            "--max_new_tokens, --ifeval_max_new_tokens and --eval_batch_size >= 1")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds {self.seeds}: give one or more different seeds, e.g. --seeds 1337 1338 1339")
        if self.token_budget is not None and self.token_budget < 1:
            raise UserError(f"--token_budget {self.token_budget}: must be >= 1 (tokens per run)")
        if any(n < 0 for n in self.draw_rows):
            raise UserError(f"--draw_rows {self.draw_rows}: must be >= 0 (0: all rows)")
        self._check_preference()
        check_primary_metric(self.primary_metric, self.ifeval_prompts, self.eval_examples, list(self.reference_sets))

    def _check_preference(self) -> None:
        if self.preference_loss is None:
            return
        if self.preference_loss not in PREFERENCE_LOSSES:
            raise UserError(f"--preference_loss {self.preference_loss!r}: choose from {', '.join(PREFERENCE_LOSSES)}")
        unpaired = sorted(set(self.orders) & set(NOT_FOR_PAIRS))
        if unpaired:
            raise UserError(f"--orders {unpaired[0]} is not available for preference pairs; use shuffle, by_source "
                            "or as_given")
        for flag, value in (("draw_rows", self.draw_rows), ("token_budget", self.token_budget)):
            if value:
                raise UserError(f"--{flag} is for instruction data; a preference study trains on every pair of its "
                                "data dirs (prepare smaller sets of pairs to compare sizes)")

    @property
    def data_format(self) -> str:
        return INSTRUCTION_FORMAT if self.preference_loss is None else PREFERENCE_FORMAT

    def aa_seeds(self) -> list[int]:
        """The A/A arm's seeds: as many as --seeds, none of them."""
        return [max(self.seeds) + 1 + i for i in range(len(self.seeds))]
