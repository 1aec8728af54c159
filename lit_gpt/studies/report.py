"""The dataset comparison's report (`lit_gpt.studies.compare`): markdown tables and notes, and the plot.

The first table is the study's claim: the declared primary metric of every arm (mean over its seeds ± the
between-seed standard deviation), its difference from the baseline with the interval, p-value (raw and Holm),
minimum detectable effect and test of `lit_gpt.studies.analysis`, and the A/A control. The other tables show more
numbers with their seed spread and no tests: per arm (training, IFEval with and without echoes, answer length,
EOS rate), the reference loss per answer style (per answer and token-weighted, with and without the end-of-turn
token), and, for an IFEval primary metric, the length-controlled view. Untrained base and instruction-tuned reference
rows are labelled as what they are.
"""

import json
import math
from pathlib import Path
from typing import Callable, Optional

import matplotlib.figure

from lit_gpt.studies.analysis import ARM_ROLES, HELD_OUT, item_scores, metric, metric_spread, spread
from lit_gpt.utils import atomic_path

CONTAMINATION_THRESHOLD = 0.7  # held-out prompts at least this ROUGE-L similar to a training instruction
TIE_BAND = 0.05  # a judge preference within 0.5 +- this is a tie
FULL_IFEVAL = 541  # IFEval's prompts
ROLE_LABELS = {"aa_control": " (A/A control)", "base": "", "reference": ""}


def _fmt(value, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if percent:
        return f"{100 * value:.1f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pm(mean: Optional[float], sd: Optional[float], digits: int = 3, percent: bool = False) -> str:
    """'24.1 ± 1.3': a mean over seeds and its between-seed SD (none for one run)."""
    text = _fmt(mean, digits, percent)
    return text if sd is None or mean is None else f"{text} ± {_fmt(sd, digits, percent)}"


def _signed(value: float, pass_fail: bool) -> str:
    return f"{100 * value:+.1f}" if pass_fail else f"{value:+.3f}"


def _interval(d: dict, pass_fail: bool) -> str:
    return (f"{_signed(d['difference'], pass_fail)} [{_signed(d['low'], pass_fail)}, "
            f"{_signed(d['high'], pass_fail)}]")


def _p(value: Optional[float]) -> str:
    return "–" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _row(cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _table(header: list, rows: list) -> str:
    return "\n".join([_row(header), "|" + "|".join("---" for _ in header) + "|"] + [_row(r) for r in rows]) + "\n"


def _label(arm: dict) -> str:
    return arm["name"] + ROLE_LABELS.get(arm["role"], "")


def _values(arm: dict, get: Callable[[dict], Optional[float]]) -> list:
    """One number per run (`get` of the run record; None where it has none)."""
    return [get(run) for run in arm["runs"]]


def _cell(arm: dict, get: Callable[[dict], Optional[float]], digits: int = 3, percent: bool = False) -> str:
    return _pm(*spread(_values(arm, get)), digits=digits, percent=percent)


def _mean_of(name: str) -> Callable[[dict], Optional[float]]:
    def get(run: dict) -> Optional[float]:
        scores = item_scores(run["evaluation"], name)
        return sum(scores) / len(scores) if scores else None
    return get


# ---- the claim: the primary metric -----------------------------------------------------------------------------------
def _verdict(d: dict, pass_fail: bool) -> str:
    if not d["significant"]:
        return "no detectable difference"
    better = d["difference"] > 0 if pass_fail else d["difference"] < 0
    return "significant: " + ("better" if better else "worse")


def primary_table(comparison: dict) -> str:
    stats = comparison["statistics"]
    pass_fail, name = stats["pass_fail"], stats["primary_metric"]
    tested = {d["arm"]: d for d in stats["comparisons"]}
    aa = stats.get("aa_control")
    header = ["arm", "seeds", f"{name} ({'%' if pass_fail else 'lower is better'}; mean ± seed SD)",
              f"difference from {stats['baseline']} [95% interval]", "p", "p (Holm)", "min. detectable effect",
              "test", "verdict"]
    rows = []
    for arm in comparison["arms"]:
        mean, sd = metric_spread(arm, name)
        d = tested.get(arm["name"]) or (aa if aa and aa["arm"] == arm["name"] else None)
        cells = [_label(arm), len(arm["runs"]) if arm["role"] in ARM_ROLES else "–",
                 _pm(mean, sd, percent=pass_fail)]
        if arm["role"] == "baseline":
            cells += ["baseline"] + ["–"] * 5
        elif d is None:
            cells += ["not tested"] + ["–"] * 5
        else:
            holm = _p(d["p_adjusted"]) if arm["role"] == "arm" else "not in the family"
            verdict = _verdict(d, pass_fail) if arm["role"] == "arm" else (
                "SIGNIFICANT: the test is miscalibrated" if d["p_value"] < 0.05 else "not significant (as it must be)")
            cells += [_interval(d, pass_fail), _p(d["p_value"]), holm,
                      (f"{100 * d['mde']:.1f}" if pass_fail else f"{d['mde']:.3f}"), d["test"], verdict]
        rows.append(cells)
    return f"**The claim: {stats['label']}, every arm against {stats['baseline']}**\n\n" + _table(header, rows)


# ---- more numbers, not tested ----------------------------------------------------------------------------------------
def _ifeval(get: Callable[[dict], Optional[float]]) -> Callable[[dict], Optional[float]]:
    return lambda run: get(run["evaluation"]["ifeval"]) if run["evaluation"].get("ifeval") else None


def _passes_by_echo(scores: dict) -> int:
    return sum(bool(p) and bool(e) for p, e in zip(scores["prompt_loose"], scores["echo"]))


def arms_table(comparison: dict) -> str:
    arms = comparison["arms"]
    with_ifeval = any(run["evaluation"].get("ifeval") for arm in arms for run in arm["runs"])
    with_eos = bool(comparison["prompts"])
    judged = comparison.get("judge") is not None
    header = ["arm", "data", "order", "epochs", "train ex.", "cut at max_seq_length %", "steps", "tokens read (≈)",
              "final train loss", "answer NLL, per answer (held-out)"] + (["EOS rate %"] if with_eos else []) + \
        ["contaminated prompts"]
    if with_ifeval:
        header += ["IFEval prompt strict %", "IFEval prompt loose %", "loose, echoes failed %", "echo answers",
                   "passes by echo", "answer words", "IFEval answers ended %"]
    if judged:
        header.append(f"win rate vs {comparison['judge']['baseline']} %")
    rows = []
    for arm in arms:
        trained = arm["role"] in ARM_ROLES

        def train(key: str, digits: int = 3, percent: bool = False) -> str:
            return _cell(arm, lambda run: run.get(key), digits, percent) if trained else "–"

        data = (f"`{arm['data_dir']}`" + (f", draws {arm['draw_rows']}" if arm.get("draw_rows") else "")
                if arm["data_dir"] else f"`{arm['checkpoint_dir']}`")
        cells = [_label(arm), data, arm["order"] if trained else "–", train("epochs", 2), train("train_examples", 0),
                 train("cut_share", percent=True), train("steps", 0), train("tokens_read", 0),
                 train("final_train_loss"), _cell(arm, _mean_of("answer_nll"))]
        cells += ([_cell(arm, lambda r: r["evaluation"].get("eos_rate"), percent=True)] if with_eos else [])
        cells.append(", ".join(f"{k} {v}" for k, v in (arm.get("contaminated") or {}).items()) or "–")
        if with_ifeval:
            cells += [_cell(arm, _ifeval(lambda s: s["prompt_level_strict_acc"]), percent=True),
                      _cell(arm, _ifeval(lambda s: s["prompt_level_loose_acc"]), percent=True),
                      _cell(arm, _mean_of("ifeval_prompt_loose_no_echo"), percent=True),
                      _cell(arm, _ifeval(lambda s: sum(s["echo"])), 1), _cell(arm, _ifeval(_passes_by_echo), 1),
                      _cell(arm, _ifeval(lambda s: sum(s["answer_words"]) / len(s["answer_words"])), 1),
                      _cell(arm, _ifeval(lambda s: s["finished_share"]), percent=True)]
        if judged:
            result = arm.get("judge")
            cells.append("baseline" if arm is arms[0] else "–" if not result else
                         f"{_fmt(result['win_rate'], percent=True)} ({result['wins']}-{result['ties']}-"
                         f"{result['losses']})")
        rows.append(cells)
    return "**Per arm: mean ± between-seed SD, untested**\n\n" + _table(header, rows)


def loss_table(comparison: dict) -> str:
    """The reference loss per answer style: per answer (the tested kind) and token-weighted, with and without EOS."""
    header = ["arm", "answer style", "answers (cut)", "per answer", "per answer, no EOS", "token-weighted",
              "token-weighted, no EOS"]
    rows = []
    for arm in comparison["arms"]:
        for name in comparison["reference_sets"]:
            losses = [run["evaluation"]["losses"].get(name) for run in arm["runs"]]
            if not all(losses):
                continue
            rows.append([_label(arm), name, f"{losses[0]['answers']} ({losses[0]['cut']})",
                         _cell(arm, _mean_of(f"answer_nll:{name}")), _cell(arm, _mean_of(f"answer_nll_no_eos:{name}")),
                         _pm(*spread([loss["token_nll"] for loss in losses])),
                         _pm(*spread([loss["token_nll_no_eos"] for loss in losses]))])
    return ("**Reference loss per answer style (nats/token, lower is better), mean ± between-seed SD, untested**\n\n"
            + _table(header, rows)) if rows else ""


def length_table(comparison: dict) -> str:
    stats = comparison["statistics"]
    if not stats.get("length"):
        return ""
    header = ["arm", "mean answer words ± seed SD", f"difference on {stats['primary_metric']}",
              "length-adjusted difference [95% interval]", "p (not corrected)"]
    raw = {d["arm"]: d for d in stats["comparisons"] + ([stats["aa_control"]] if stats.get("aa_control") else [])}
    rows = []
    for entry in stats["length"]:
        adjusted, d = entry["adjusted"], raw.get(entry["arm"])
        rows.append([entry["arm"], _pm(entry["mean_words"], entry["mean_words_sd"], 1),
                     _signed(d["difference"], True) if d else "baseline" if adjusted is None else "–",
                     _interval(adjusted, True) if adjusted else "–", _p(adjusted["p_value"]) if adjusted else "–"])
    return "**Length-controlled view (secondary, not corrected)**\n\n" + _table(header, rows)


def markdown_table(comparison: dict) -> str:
    """The claim and the per-arm numbers (what compare_datasets.py prints)."""
    return primary_table(comparison) + "\n" + arms_table(comparison)


# ---- notes -----------------------------------------------------------------------------------------------------------
def _effect(value: float, pass_fail: bool) -> str:
    return f"{100 * value:.1f} accuracy points" if pass_fail else f"{value:.3f} nats/token"


def mde_note(comparison: dict) -> str:
    stats = comparison["statistics"]
    tested = stats["comparisons"] + ([stats["aa_control"]] if stats.get("aa_control") else [])
    if not tested:
        return "Only the baseline was trained: nothing was tested."
    pass_fail, items = stats["pass_fail"], tested[0]["items"]
    low, high = min(d["mde"] for d in tested), max(d["mde"] for d in tested)
    size = _effect(low, pass_fail)
    if _effect(high, pass_fail) != size:
        size += f" to {_effect(high, pass_fail)}"
    if pass_fail:
        where = f"{items} IFEval prompts"
        if items < FULL_IFEVAL:
            where = (f"{items} of IFEval's {FULL_IFEVAL} prompts (a reduced size: on all {FULL_IFEVAL} the design "
                     "would detect smaller effects)")
    else:
        where = f"{items} reference answers ({metric(stats['primary_metric']).reference_set})"
    return (f"Minimum detectable effect of this design (the smallest true difference its test finds with 80% power "
            f"at 5%, before Holm): {size}, with {len(comparison['seeds'])} seed(s) per arm on {where}. A difference "
            "below it may well exist: \"no detectable difference\" is not \"no difference\".")


def aa_note(comparison: dict) -> str:
    stats = comparison["statistics"]
    aa = stats.get("aa_control")
    if aa is None:
        return ("No A/A control (--aa_control false): nothing here shows that the test keeps its 5% false-positive "
                "rate on this study.")
    seeds = next(arm["seeds"] for arm in comparison["arms"] if arm["name"] == aa["arm"])
    verdict = ("the method calls it SIGNIFICANT although both arms are the same condition: do not trust its other "
               "verdicts" if aa["p_value"] < 0.05 else "the method calls it not significant, as it must")
    return (f"A/A control: {aa['arm']} is the baseline {stats['baseline']} trained again with seeds "
            f"{', '.join(map(str, seeds))}; difference {_interval(aa, stats['pass_fail'])}, p = {_p(aa['p_value'])} "
            f"({aa['test']}): {verdict}.")


def method_notes(comparison: dict) -> list[str]:
    stats = comparison["statistics"]
    k = len(stats["comparisons"])
    notes = [f"Test: every arm against {stats['baseline']} on the primary metric, declared before the runs "
             f"({stats['primary_metric']}): the variance of the difference from the spread of the run means over "
             "seeds and of the per-item differences (`lit_gpt.eval.statistics.compare_arms`), a t test with "
             "Satterthwaite's degrees of freedom whose p is taken at its worst over every split of the variance "
             "among the arms' seeds and the items (`worst_case_p`; intervals at the matching level); p-values "
             f"Holm-corrected over the study's {k} comparison(s) "
             "(family-wise 5%). Everything else: mean ± between-seed SD, untested; no claims are made about it."]
    if len(comparison["seeds"]) == 1:
        notes.append("One seed per arm: item noise only (what another seed would change is not seen); pass/fail "
                     "metrics use the exact McNemar test.")
    if "missing" in stats:
        notes.append(f"Not tested: {stats['missing']}.")
    return notes + [mde_note(comparison), aa_note(comparison)]


def setting_notes(comparison: dict) -> list[str]:
    budget = comparison.get("token_budget")
    steps = (f"every run trained about {budget} tokens: steps = budget / ({comparison['batch_size']} examples x the "
             "mean example length of its data), equal tokens, not equal examples" if budget else
             "every run trained the same steps (examples), not the same tokens: see tokens read")
    preference = comparison.get("preference")
    training = (f"preference pairs, {preference['loss']} loss ({comparison['method']}; beta "
                f"{preference['beta'] if preference['beta'] is not None else 'the loss default'}), finetune/dpo.py's "
                "loop; a pair's two rows count in tokens read, its chosen answer is what the held-out set scores"
                if preference else comparison["method"])
    script = "dpo" if preference else comparison["method"]
    notes = [f"Model: `{comparison['checkpoint_dir']}` ({training}), the same hyperparameters for every "
             f"run: `{json.dumps(comparison['hyperparameters'])}` (the rest: the defaults "
             f"finetune/{script}.py ships with); seeds {', '.join(map(str, comparison['seeds']))} "
             f"(one run per arm per seed: LoRA init, dropout, data order, drawn rows); {steps}. Cut at "
             f"max_seq_length: the share of training examples cut at {comparison['max_seq_length']} tokens."]
    styles = "; ".join(f"{name}: {'its answers' if name == HELD_OUT else where}"
                       for name, where in comparison["reference_sets"].items())
    notes.append(f"Held-out set: {comparison['eval_set']}. Answer styles of the reference loss: {styles}. Loss in "
                 "nats per answer token, lower is better; per answer = the mean over answers of each answer's mean "
                 "(every answer once: what the test uses), token-weighted = all answer tokens together (long answers "
                 "weigh more); no EOS = the end-of-turn token's loss left out. Contaminated prompts: per answer "
                 f"style, prompts whose instruction near-duplicates a training instruction (ROUGE-L >= "
                 f"{CONTAMINATION_THRESHOLD}): they flatter that arm.")
    if comparison["prompts"]:
        notes.append(f"EOS rate: greedy answers to {len(comparison['prompts'])} held-out prompts that stop within "
                     f"{comparison['max_new_tokens']} new tokens.")
    if comparison.get("ifeval_prompts"):
        notes.append(f"IFEval: {comparison['ifeval_prompts']} of {FULL_IFEVAL} prompts, greedy, at most "
                     f"{comparison['ifeval_max_new_tokens']} new tokens, lm-eval's rule checkers; answers ended: "
                     "the share that stopped within the budget. Echo answers repeat their prompt (the prompt as a "
                     "prefix, or ROUGE-L >= 0.8 to it); \"echoes failed\" counts them as failures, \"passes by echo\" "
                     "are the loose passes of echo answers.")
    return notes


def row_notes(comparison: dict) -> list[str]:
    notes = []
    for arm in comparison["arms"]:
        if arm["role"] == "base":
            notes.append(f"{arm['name']}: `{arm['checkpoint_dir']}` without fine-tuning, in the arms' chat format.")
        elif arm["role"] == "reference":
            notes.append(f"{arm['name']}: another model, instruction-tuned by its makers, in its own chat format "
                         f"({arm['prompt_style']}): a point of scale, not an arm; "
                         + ("its losses are on the same tokens and format." if arm["losses_comparable"] else
                            "its losses are not shown (another tokenizer or chat format)."))
    if comparison["statistics"].get("length"):
        notes.append("Length-controlled view: each score adjusted to the mean answer length with the within-item "
                     "slope of score on answer words (regression on length and arm), then compared as the primary "
                     "metric is; a secondary view, not Holm-corrected (the slope's own uncertainty is left out).")
    judge = comparison.get("judge")
    if judge:
        consistency = [f"{arm['name']}: {_fmt(arm['judge'].get('order_consistent'), percent=True)}%"
                       for arm in comparison["arms"] if arm.get("judge")]
        notes.append(f"Win rate: judge `{judge['checkpoint_dir']}` compares each run's answers with the "
                     f"{judge['baseline']} run of the same seed index on the same {len(comparison['prompts'])} "
                     "prompts, asked in both orders; wins-ties-losses pooled over runs, a tie (preference within "
                     f"0.5 ± {judge['tie_band']}) counts half; untested. Judge consistency (same answer picked in "
                     "both orders): " + ", ".join(consistency) + ". A judge that follows the position produces ties, "
                     "not evidence.")
    return notes


def wall_time_note(comparison: dict) -> str:
    study, machine = comparison["study"], comparison["study"].get("machine") or {}
    runs = ", ".join(f"{arm['name']}: train {sum(r['train_seconds'] for r in arm['runs']):.0f} s, eval "
                     f"{sum(r['eval_seconds'] for r in arm['runs']):.0f} s" for arm in comparison["arms"]
                     if arm["role"] in ARM_ROLES)
    return (f"Wall time {comparison['wall_seconds'] / 60:.1f} min (data build {study['build_seconds']:.0f} s; {runs}) "
            f"on {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, load average before "
            f"{', '.join(f'{x:.2f}' for x in machine.get('load_average_before', []))}.")


def markdown_report(comparison: dict) -> str:
    study = comparison.get("study")
    title = "# Dataset comparison\n\n"
    if study:
        title = f"# {study['question']}\n\nRecipe `{study['recipe']}`; data built by:\n\n```\n" + "\n".join(
            study["build"]) + "\n```\n\n"
    tables = [markdown_table(comparison), loss_table(comparison), length_table(comparison)]
    notes = method_notes(comparison) + setting_notes(comparison) + row_notes(comparison)
    if study:
        notes.append(wall_time_note(comparison))
    return title + "\n".join(t for t in tables if t) + "\n" + "\n\n".join(notes) + "\n"


# ---- the plot --------------------------------------------------------------------------------------------------------
def plot_panels(comparison: dict) -> list[tuple[str, Callable, bool]]:
    """(title, one number per run, percent) for every bar panel."""
    primary = comparison["statistics"]["primary_metric"]
    runs = [run for arm in comparison["arms"] for run in arm["runs"]]
    panels = [(f"primary: {primary}", _mean_of(primary), metric(primary).pass_fail)]
    if primary != "answer_nll" and any(item_scores(r["evaluation"], "answer_nll") for r in runs):
        panels.append(("answer NLL per answer (held-out)", _mean_of("answer_nll"), False))
    if primary != "ifeval_prompt_loose" and any(r["evaluation"].get("ifeval") for r in runs):
        panels.append(("IFEval prompt-level loose", _mean_of("ifeval_prompt_loose"), True))
    if any(r["evaluation"].get("eos_rate") is not None for r in runs):
        panels.append(("EOS rate", lambda r: r["evaluation"].get("eos_rate"), True))
    return panels


def plot_comparison(comparison: dict, path: Path) -> None:
    """Bars of each arm's mean over its seeds with the between-seed SD, and the per-epoch curves of every run."""
    arms, panels = comparison["arms"], plot_panels(comparison)
    curves = any(len(run.get("epoch_curve") or []) > 1 for arm in arms for run in arm["runs"])
    fig = matplotlib.figure.Figure(figsize=(4 * (len(panels) + curves), 3.5))  # no pyplot: no GUI backend needed
    axes = fig.subplots(1, len(panels) + curves, squeeze=False)[0]
    names = [_label(arm) for arm in arms]
    for ax, (title, get, percent) in zip(axes, panels):
        scale = 100 if percent else 1
        found = [spread(_values(arm, get)) for arm in arms]
        means = [m * scale if m is not None else float("nan") for m, _ in found]
        errors = [sd * scale if sd is not None else 0.0 for _, sd in found]
        bars = ax.bar(range(len(arms)), means, color="tab:blue", yerr=errors if any(errors) else None, capsize=3)
        for bar, value in zip(bars, means):
            if not math.isnan(value):
                ax.annotate(f"{value:.1f}" if percent else f"{value:.3f}",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                            fontsize=8)
        ax.set_title(title + " (± seed SD)", fontsize=9)
        ax.set_xticks(range(len(arms)), names, rotation=20, ha="right", fontsize=7)
        if percent:
            ax.set_ylim(0, 105)
    if curves:  # the epochs question: how train and val loss move epoch by epoch, every run
        ax = axes[-1]
        for i, arm in enumerate(arms):
            for k, run in enumerate(arm["runs"]):
                points = [p for p in run.get("epoch_curve") or [] if p.get("val_loss") is not None]
                label = arm["name"] if k == 0 else None
                ax.plot([p["epoch"] for p in points], [p["val_loss"] for p in points], "o-", color=f"C{i}",
                        label=label and f"{label} val")
                ax.plot([p["epoch"] for p in points], [p["train_loss"] for p in points], "x--", color=f"C{i}",
                        alpha=0.6, label=label and f"{label} train")
        ax.set_title("per-epoch loss (own test set), every run")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
