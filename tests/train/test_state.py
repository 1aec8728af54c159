"""lit_gpt/train/state.py: TrainState is the resume format; it survives torch.save / weights_only torch.load."""

import pytest
import torch

from lit_gpt.file_names import TRAIN_STATE_FILE
from lit_gpt.train.state import EpochRecord, TrainPlan, TrainState, checkpoint_steps, find_resume_file, step_dir
from lit_gpt.utils import UserError

PLAN = TrainPlan(batch_size=8, seed=1, order="shuffle", n_train=16, max_seq_length=64, data_fingerprint="abc")


def test_state_dict_round_trip_through_a_weights_only_load(tmp_path):
    state = TrainState(plan=PLAN, step=3, epoch=1, batch_in_epoch=1, tokens=100, padded_tokens=120,
                       best_val_loss=1.5, best_step=2, best_epoch=1.0, evals_without_improvement=1,
                       train_losses=[(1, 2.0), (2, 1.8), (3, 1.7)], val_losses=[(2, 1.5), (3, 1.6)],
                       epochs=[EpochRecord(epoch=1.0, step=2, train_loss=1.9, val_loss=1.5)])
    torch.save({"train_state": state.state_dict()}, tmp_path / "state.pth")
    loaded = torch.load(tmp_path / "state.pth", weights_only=True)["train_state"]  # plain containers only
    fresh = TrainState(plan=PLAN)
    fresh.load_state_dict(loaded)
    assert fresh == state
    assert fresh.epochs_done(steps_per_epoch=2) == 1.5


def test_a_state_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="not a training state"):
        TrainState(plan=PLAN).load_state_dict({"iter_num": 3, "plan": {}})


def test_resume_lookup(tmp_path):
    assert find_resume_file(tmp_path, None) is None and find_resume_file(tmp_path, "auto") is None
    for step in (2, 4):
        step_dir(tmp_path, step).mkdir(parents=True)
    (step_dir(tmp_path, 4) / TRAIN_STATE_FILE).write_bytes(b"x")
    assert checkpoint_steps(tmp_path) == [step_dir(tmp_path, 4)]  # step 2 has weights only
    assert find_resume_file(tmp_path, "auto") == step_dir(tmp_path, 4) / TRAIN_STATE_FILE
    assert find_resume_file(tmp_path / "elsewhere", str(tmp_path)) == step_dir(tmp_path, 4) / TRAIN_STATE_FILE
    with pytest.raises(UserError, match="--resume auto"):
        find_resume_file(tmp_path, None)  # a fresh run would clobber the earlier one's checkpoints
    with pytest.raises(UserError, match="no training state"):
        find_resume_file(tmp_path, str(step_dir(tmp_path, 2)))


@pytest.mark.parametrize("weights", ["lit_model.pth", "lit_model.pth.lora"])
def test_a_fresh_run_is_refused_where_a_model_no_run_left_would_be_overwritten(tmp_path, weights):
    """A converted checkpoint (or weights copied from elsewhere) has weights but no checkpoints/ of a run."""
    (tmp_path / weights).write_bytes(b"someone else's weights")
    for resume in (None, "auto"):
        with pytest.raises(UserError, match=f"holds {weights} but no checkpoints/ of a fine-tuning run .* choose "
                                            "another --out_dir"):
            find_resume_file(tmp_path, resume)
    step_dir(tmp_path, 2).mkdir(parents=True)
    (step_dir(tmp_path, 2) / TRAIN_STATE_FILE).write_bytes(b"x")
    assert find_resume_file(tmp_path, "auto") == step_dir(tmp_path, 2) / TRAIN_STATE_FILE  # a run's own weights
