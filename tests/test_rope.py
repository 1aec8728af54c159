"""lit_gpt/rope.py: the rotation is the complex product of each (x_i, x_{i + n/2}) pair with e^{i pos theta}, partial
rotary passes the rest through, and the scalings move the frequencies they should."""

import math

import torch

from lit_gpt.config import Config
from lit_gpt.rope import apply_rope, inverse_frequencies, rope_cos_sin


def test_rotation_is_the_complex_product_of_rotate_half_pairs():
    config = Config(n_head=1, n_embd=8, rope_base=100.0, rotary_percentage=0.5)  # 4 of the 8 dims rotate
    x = torch.randn(1, 1, 5, 8, dtype=torch.float64)
    pos = torch.arange(5)
    cos, sin = rope_cos_sin(pos, config, dtype=torch.float64)
    out = apply_rope(x, cos, sin, config.rope_n_elem)
    theta = 100.0 ** (-torch.arange(0, 4, 2, dtype=torch.float64) / 4)
    pairs = torch.complex(x[..., :2], x[..., 2:4]) * torch.polar(torch.ones(5, 2, dtype=torch.float64),
                                                                   pos[:, None] * theta)
    torch.testing.assert_close(out[..., :2], pairs.real)
    torch.testing.assert_close(out[..., 2:4], pairs.imag)
    torch.testing.assert_close(out[..., 4:], x[..., 4:])  # partial rotary: the rest as it was


def test_llama3_scaling_keeps_high_and_divides_low_frequencies():
    scaling = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=8192)
    plain, _ = inverse_frequencies(128, 500000.0)
    scaled, attention = inverse_frequencies(128, 500000.0, scaling)
    wavelength = 2 * math.pi / plain
    assert attention == 1.0
    torch.testing.assert_close(scaled[wavelength < 8192 / 4], plain[wavelength < 8192 / 4])
    torch.testing.assert_close(scaled[wavelength > 8192], plain[wavelength > 8192] / 8.0)


def test_per_row_positions_give_each_row_its_own_table():
    config = Config(n_head=2, n_embd=16)
    pos = torch.tensor([[3], [7]])
    cos, sin = rope_cos_sin(pos, config, dtype=torch.float32)  # (B, 1, T, n_elem)
    for row, p in enumerate((3, 7)):
        one_cos, one_sin = rope_cos_sin(torch.tensor([p]), config, dtype=torch.float32)
        torch.testing.assert_close(cos[row, 0], one_cos)
        torch.testing.assert_close(sin[row, 0], one_sin)
