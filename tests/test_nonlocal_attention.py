"""The scale-aware non-local branch against its definition: 6x6 patches placed on a 2x
canvas, cropped, then ``down`` (the official formulation), on odd and even sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from realciao.archs.nonlocal_attention import AGGREGATE_DIVISOR, SOFTMAX_GAIN, ScaleAwareNonLocal


def by_definition(branch: ScaleAwareNonLocal, feature: torch.Tensor) -> torch.Tensor:
    b, c, h, w = feature.shape
    x = F.pad(feature, (0, w % 2, 0, h % 2), mode="reflect")
    hp, wp = x.shape[-2:]
    embed = branch.conv_assembly(x)
    match = branch.conv_match_1(x)
    reference = branch.conv_match_2(F.interpolate(x, scale_factor=0.5, mode="bilinear"))
    keys = F.unfold(reference, 3, padding=1)
    keys = (keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-4)).transpose(1, 2)
    weights = torch.softmax(torch.bmm(keys, F.unfold(match, 3, padding=1)) * SOFTMAX_GAIN, dim=1)
    patches = F.unfold(embed, 6, stride=2, padding=2)
    canvas = F.fold(torch.bmm(patches, weights), (2 * hp + 4, 2 * wp + 4), 6, stride=2)[:, :, 2:-2, 2:-2]
    return (branch.down(canvas) / AGGREGATE_DIVISOR)[:, :, :h, :w]


@pytest.mark.parametrize("size", [(8, 10), (9, 7), (2, 2), (5, 12)])
def test_matches_the_canvas_definition_with_gradients(size):
    torch.manual_seed(0)
    branch = ScaleAwareNonLocal(4).double()
    with torch.no_grad():
        branch.down.weight.normal_()  # every tap matters, including the border ones
        branch.down.bias.normal_()
    feature = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 4, *size, dtype=torch.float64)
    expected = by_definition(branch, feature)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), [feature, *branch.parameters()])
    got = branch(feature)
    grads = torch.autograd.grad((got * upstream).sum(), [feature, *branch.parameters()])
    assert torch.allclose(got, expected, atol=1e-12)
    for e, g in zip(expected_grads, grads):
        assert torch.allclose(g, e, atol=1e-10)


def test_chunked_rows_agree_with_one_chunk():
    torch.manual_seed(0)
    branch = ScaleAwareNonLocal(4).double()
    feature = torch.randn(2, 4, 11, 6, dtype=torch.float64)
    whole = branch(feature)
    branch.chunk_elements = 1  # one row of positions per chunk
    assert torch.allclose(branch(feature), whole, atol=1e-12)
