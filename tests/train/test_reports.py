"""lit_gpt/train/reports.py: the files a run writes besides weights, from a tiny checkpoint with the real SmolLM2
tokenizer, prepared data and hand-made run states: what makes out_dir loadable on its own, train_summary.json,
overfitting_summary.json and the loss curve. A real run writing them: train/test_loop.py, train/test_resume.py."""

import json
import struct

import pytest
import yaml

from lit_gpt.file_names import (BEST_DIR, DATA_MANIFEST_FILE, HYPERPARAMETERS_FILE, LIT_CONFIG_FILE, LORA_CONFIG_FILE,
                                LORA_WEIGHTS_FILE, PROMPT_STYLE_FILE, TOKENIZER_FILES)
from lit_gpt.lora import LoRAConfig
from lit_gpt.prompts.styles import load_prompt_style
from lit_gpt.train.reports import overfitting_summary, plot_loss, run_summary, write_run_files
from lit_gpt.train.state import EpochRecord, TrainPlan, TrainState

PLAN = TrainPlan(batch_size=8, seed=1337, order="shuffle", n_train=16, max_seq_length=256, data_fingerprint="abc")


def state(**values) -> TrainState:
    """Two epochs of four steps with validation after each; the best val loss after the first."""
    run = dict(step=8, epoch=2, batch_in_epoch=0, tokens=900, padded_tokens=1200, best_val_loss=1.5, best_step=4,
               best_epoch=1.0, evals_without_improvement=1, stop_reason="done",
               train_losses=[(s, 3.0 - 0.25 * s) for s in range(1, 9)], val_losses=[(4, 1.5), (8, 1.75)],
               epochs=[EpochRecord(1.0, 4, 2.375, 1.5), EpochRecord(2.0, 8, 1.375, 1.75)])
    return TrainState(PLAN, **{**run, **values})


def read(path):
    return json.loads(path.read_text())


# ---- the files that make out_dir self-describing -----------------------------------------------------------------
@pytest.mark.parametrize("lora", [None, LoRAConfig(r=4, alpha=8.0)], ids=["full", "lora"])
def test_run_files_make_the_out_dir_loadable(checkpoint, capitals_data, tmp_path, lora):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    manifest = read(capitals_data / "manifest.json")
    write_run_files(out_dir, checkpoint, capitals_data, manifest, lora, {"learning_rate": 0.003, "epochs": 2},
                    "lora" if lora else "full")
    assert read(out_dir / LIT_CONFIG_FILE) == read(checkpoint / LIT_CONFIG_FILE)
    copied = [name for name in TOKENIZER_FILES if (checkpoint / name).is_file()]
    assert "tokenizer.json" in copied and "chat_template.jinja" in copied
    assert all((out_dir / name).read_bytes() == (checkpoint / name).read_bytes() for name in copied)
    assert load_prompt_style(out_dir).name == "chatml"  # the data's prompt style, from its manifest
    assert read(out_dir / DATA_MANIFEST_FILE) == manifest
    assert (out_dir / LORA_CONFIG_FILE).is_file() == (lora is not None)
    if lora is not None:
        assert LoRAConfig.from_file(out_dir / LORA_CONFIG_FILE) == lora
    settings = (out_dir / HYPERPARAMETERS_FILE).read_text()
    assert settings.startswith(f"# finetune/{'lora' if lora else 'full'}.py settings; rerun with --config\n")
    assert yaml.safe_load(settings) == {"checkpoint_dir": str(checkpoint.resolve()),
                                        "data_dir": str(capitals_data.resolve()), "out_dir": str(out_dir.resolve()),
                                        "learning_rate": 0.003, "epochs": 2}


def test_the_datas_own_prompt_style_file_wins_over_its_manifest(checkpoint, capitals_data, tmp_path):
    data_dir, out_dir = tmp_path / "data", tmp_path / "out"
    data_dir.mkdir()
    out_dir.mkdir()
    (data_dir / PROMPT_STYLE_FILE).write_text(json.dumps({"name": "smollm2"}))
    write_run_files(out_dir, checkpoint, data_dir, {"prompt_style": "chatml"}, None, {}, "full")
    assert read(out_dir / PROMPT_STYLE_FILE) == {"name": "smollm2"}
    write_run_files(tmp_path, checkpoint, tmp_path / "nowhere", {}, None, {}, "full")  # no style anywhere: none saved
    assert not (tmp_path / PROMPT_STYLE_FILE).exists()


# ---- summaries ---------------------------------------------------------------------------------------------------
def test_train_summary():
    summary = run_summary(state(), steps_per_epoch=4, weights="lit_model.pth", weights_from_step=4, order="shuffle",
                          first_epoch_hash="a34063c45e94")
    assert summary == {"steps": 8, "epochs": 2.0, "stop_reason": "done", "tokens": 900, "non_pad_share": 0.75,
                       "final_train_loss": 1.0, "final_val_loss": 1.75, "best_val_loss": 1.5, "best_step": 4,
                       "best_epoch": 1.0, "weights": "lit_model.pth", "weights_from_step": 4, "order": "shuffle",
                       "first_epoch_order_hash": "a34063c45e94"}
    stopped = run_summary(state(step=6, epoch=1, batch_in_epoch=2), 4, "lit_model.pth", 6, "shuffle", "x")
    assert stopped["epochs"] == 1.5  # inside the second epoch
    empty = run_summary(TrainState(PLAN), 4, "lit_model.pth", 0, "sorted", "x")
    assert (empty["final_train_loss"], empty["final_val_loss"], empty["non_pad_share"]) == (None, None, 0.0)


def test_overfitting_summary(tmp_path):
    (tmp_path / BEST_DIR).mkdir()
    (tmp_path / BEST_DIR / LORA_WEIGHTS_FILE).write_bytes(b"weights")
    summary = overfitting_summary(state(stop_reason="early_stopping"), tmp_path, lora=True, early_stopping_patience=1)
    assert summary == {
        "best_val_loss": 1.5, "best_step": 4, "best_epoch": 1.0, "best_weights": f"{BEST_DIR}/{LORA_WEIGHTS_FILE}",
        "final_step": 8, "final_train_loss": 1.375, "final_val_loss": 1.75, "final_gap": 0.375,
        "gap_note": "final val loss minus the mean train loss of the last epoch", "stopped_early": True,
        "early_stopping_patience": 1, "evals_without_improvement": 1,
        "per_epoch": [{"epoch": 1.0, "step": 4, "train_loss": 2.375, "val_loss": 1.5},
                      {"epoch": 2.0, "step": 8, "train_loss": 1.375, "val_loss": 1.75}]}
    # full fine-tune weights were not kept as the best: no best_weights; without epochs the last step's loss
    plain = overfitting_summary(state(epochs=[]), tmp_path, lora=False, early_stopping_patience=None)
    assert (plain["best_weights"], plain["final_train_loss"], plain["final_gap"], plain["stopped_early"]) == \
        (None, 1.0, 0.75, False)
    unvalidated = overfitting_summary(state(val_losses=[]), tmp_path, lora=True, early_stopping_patience=None)
    assert (unvalidated["final_val_loss"], unvalidated["final_gap"]) == (None, None)


# ---- the loss curve ----------------------------------------------------------------------------------------------
def test_loss_curve_is_a_png(tmp_path):
    plot_loss(state().train_losses, state().val_losses, tmp_path / "loss.png")
    data = (tmp_path / "loss.png").read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 500 < width <= 700 and 300 < height <= 400  # 7 x 4 inches at 100 dpi, cropped to the drawing
    plot_loss([(1, 2.0)], [], tmp_path / "train_only.png")  # a run without validation still gets its curve
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["loss.png", "train_only.png"]
