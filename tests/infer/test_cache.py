"""lit_gpt/infer/cache.py: continuous batching's KV-cache rows (prefill into a row, in chunks; moving a row)."""

import pytest
import torch

from helpers import tiny_config
from lit_gpt.infer import cache as cache_module
from lit_gpt.infer.cache import RowCache
from lit_gpt.infer.sampling import generate_batch
from lit_gpt.model import GPT


def tiny_model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(**overrides)).double().eval()  # float64: chunked and whole prefills agree to ~1e-15


@pytest.mark.parametrize("overrides", [{}, dict(sliding_window=4)], ids=["global", "sliding-window"])
@torch.inference_mode()
def test_chunked_prefill_into_a_row_equals_the_whole_prompt_alone(monkeypatch, overrides):
    """11 tokens in chunks of 3 (past the window of 4) into row 1: the last logits are the full forward's, the row
    holds the keys of a one-piece prefill, and row 0 is untouched."""
    model = tiny_model(**overrides)
    prompt = torch.randint(0, 256, (11,), generator=torch.Generator().manual_seed(1))
    whole = RowCache(model, rows=2, max_seq_length=16, device=torch.device("cpu"))
    expected = whole.prefill(prompt, row=1)
    keys = model.blocks[1].attn.kv_cache.k.clone()
    monkeypatch.setattr(cache_module, "PREFILL_CHUNK", 3)
    rows = RowCache(model, rows=2, max_seq_length=16, device=torch.device("cpu"))
    assert rows.chunk == 3
    logits = rows.prefill(prompt, row=1)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(logits, model(prompt[None])[:, -1], rtol=0, atol=1e-12)
    cache = model.blocks[1].attn.kv_cache
    torch.testing.assert_close(cache.k[0, 1, :, :11], keys[0, 1, :, :11], rtol=0, atol=1e-12)  # one block of 16
    assert not cache.k[:, 0].any() and cache.first_row == 0
    rows.close()
    prompts = [prompt, prompt[:5], prompt[3:]]
    chunked = generate_batch(model, prompts, 5, batch_size=2, temperature=0.0)
    monkeypatch.setattr(cache_module, "PREFILL_CHUNK", 512)
    assert chunked == generate_batch(model, prompts, 5, batch_size=2, temperature=0.0)


@torch.inference_mode()
def test_a_row_moved_by_leave_decodes_on_as_before():
    """Rows 0-2 hold three prompts; row 0 leaves, so row 2 (the last) moves into it: its next step's logits are the
    ones it would have had in place, and the freed row's position is reset (its writes land at position 0)."""
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 256, (n,), generator=g) for n in (4, 7, 5)]

    def filled() -> RowCache:
        rows = RowCache(model, rows=3, max_seq_length=16, device=torch.device("cpu"))
        for row, p in enumerate(prompts):
            token = rows.prefill(p, row).argmax(-1, keepdim=True)
            rows.put(row, row, token, p.numel())
        return rows

    in_place = filled().step()[:, 0]
    rows = filled()
    rows.leave(0)
    assert rows.owner == [2, 1] and rows.length == [5, 7] and rows.positions.flatten().tolist() == [5, 7, 0]
    moved = rows.step()[:, 0]
    torch.testing.assert_close(moved, in_place[[2, 1]], rtol=0, atol=1e-12)
    rows.close()
    assert model.blocks[0].attn.kv_cache is None


@torch.inference_mode()
def test_rows_stay_in_order_of_the_blocks_they_read(monkeypatch):
    """Blocks of 4 positions, four rows of 2-9 tokens: before every step the rows are ordered by the blocks they
    read, most first, so the rows that read a block are the first ones (what `rows_attending` turns into skipped
    reads); rows that grow into a new block, end, or join long keep that order, and each row's logits are its
    prompt's own (the full forward of its tokens so far) whatever moved it."""
    monkeypatch.setattr("lit_gpt.model.KV_CACHE_BLOCK_CPU", 4)
    model = tiny_model()
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 256, (n,), generator=g) for n in (9, 2, 5, 3, 11)]
    rows = RowCache(model, rows=4, max_seq_length=24, device=torch.device("cpu"))
    assert rows.block == 4
    seqs = {}
    for i, p in enumerate(prompts[:4]):
        token = rows.prefill(p, rows.active).argmax(-1, keepdim=True)
        rows.put(rows.active, i, token, p.numel())
        seqs[i] = torch.cat((p, token.view(1)))
    seen_orders = set()
    for step in range(8):
        if step == 3:  # the row of prompt 0 (the longest) ends; the long prompt 4 joins at the end
            rows.leave(rows.owner.index(0))
            token = rows.prefill(prompts[4], rows.active).argmax(-1, keepdim=True)
            rows.put(rows.active, 4, token, prompts[4].numel())
            seqs[4] = torch.cat((prompts[4], token.view(1)))
        logits = rows.step()[:, 0]
        blocks = [length // 4 + 1 for length in rows.length]  # the blocks this step reads, row by row
        assert blocks == sorted(blocks, reverse=True)
        seen_orders.add(tuple(rows.owner))
        for row, owner in enumerate(rows.owner):
            torch.testing.assert_close(logits[row], model(seqs[owner][None])[0, -1], rtol=0, atol=1e-10)
        tokens = logits.argmax(-1, keepdim=True)
        rows.advance([1] * rows.active, tokens)
        for owner, token in zip(rows.owner, tokens.flatten()):
            seqs[owner] = torch.cat((seqs[owner], token.view(1)))
    assert len(seen_orders) > 2  # rows did move
    rows.close()
