"""Rotary positions keep their precision under bf16 autocast (issue 23, item 4): the cos and sin are computed once per
forward pass in float32 from float32 angles, and only then rounded to the activations' type."""
import math
import torch
from ijepa_edu.encoder import VisionTransformer, grid_coords, rope_angles, rope_rotation, apply_rope


def _rotate_with_bf16_angles(x, angles):
    "What apply_rope did before: the angles rounded to the activations' type before cos and sin."
    a = angles[:, None].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * a.cos() - x2 * a.sin(), x1 * a.sin() + x2 * a.cos()], dim=-1)


def test_rotation_is_float32_and_shared():
    ang = rope_angles(grid_coords((16, 16)).expand(2, -1, -1), 80)           # ViT-H/14 at 224 px: 16 x 16, heads of 80
    cos, sin = rope_rotation(ang)
    assert cos.dtype == sin.dtype == torch.float32 and cos.shape == (2, 1, 256, 40)
    torch.testing.assert_close(cos ** 2 + sin ** 2, torch.ones_like(cos))
    x = torch.randn(2, 3, 256, 80)
    torch.testing.assert_close(apply_rope(x, (cos, sin)), apply_rope(x, ang))   # angles or their rotation: one result


def test_bf16_rotation_error_is_the_rounding_of_the_output_only():
    "At 224 px with 14 px patches the angles reach 15 rad, where bf16 steps by 0.0625: rounding them first errs by ~0.03."
    g = torch.Generator().manual_seed(0)
    ang = rope_angles(grid_coords((16, 16)).expand(2, -1, -1), 80)
    x = torch.randn(2, 4, 256, 80, generator=g)
    exact = apply_rope(x.double(), ang.double())
    xb = x.bfloat16()
    new = (apply_rope(xb, ang).double() - exact).abs().max().item()
    old = (_rotate_with_bf16_angles(xb, ang).double() - exact).abs().max().item()
    assert (ang.max() - ang.max().bfloat16().float()).abs() < 0.0625 and ang.max() > 8
    assert new < 0.06, new                        # bf16 keeps 8 bits: |x| up to ~4.5 rounds by up to ~0.016 per term
    assert old > 2 * new, (old, new)              # the angle's rounding dominated before


def test_rope_encoder_under_bf16_autocast_matches_float32():
    "A rotary ViT under CPU bf16 autocast agrees with float32 within 0.1 of the features' spread (LayerNorm output, std 1)."
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=64, patch_size=4, embed_dim=64, depth=2, num_heads=2, rope=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = enc(x)
        with torch.autocast('cpu', dtype=torch.bfloat16): low = enc(x).float()
    err = (low - ref).abs()
    assert err.mean() < 0.02 and err.max() < 0.25, (err.mean().item(), err.max().item())
