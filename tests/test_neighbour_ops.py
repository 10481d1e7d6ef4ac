"""The memory-saving autograd functions of the upsampler: gradients checked numerically."""

from __future__ import annotations

import pytest
import torch

from realciao.archs import neighbour_ops
from realciao.archs.neighbour_ops import NeighbourMix, PairProjection


@pytest.fixture
def operands():
    torch.manual_seed(0)
    rows, values_count, dim = 9, 7, 6
    return {
        "values": torch.randn(values_count, dim, dtype=torch.float64, requires_grad=True),
        "rows": torch.randint(0, values_count, (4, rows)),
        "query_rows": torch.randint(0, values_count, (rows,)),
        "hidden": torch.randn(4, rows, 3, dtype=torch.float64, requires_grad=True),
        "value_weight": torch.randn(dim, 3, dtype=torch.float64, requires_grad=True),
        "value_bias": torch.randn(dim, dtype=torch.float64, requires_grad=True),
        "attention": torch.rand(4, rows, dtype=torch.float64, requires_grad=True),
        "weight": torch.randn(5, dim, dtype=torch.float64, requires_grad=True),
    }


@pytest.mark.parametrize("chunk", [3, 8192])  # several backward chunks, and one
def test_neighbour_mix_gradients(operands, monkeypatch, chunk):
    monkeypatch.setattr(neighbour_ops, "BACKWARD_CHUNK", chunk)
    o = operands
    assert torch.autograd.gradcheck(lambda v, h, w, b, a: NeighbourMix.apply(v, o["rows"], h, w, b, a),
                                     (o["values"], o["hidden"], o["value_weight"], o["value_bias"], o["attention"]))


@pytest.mark.parametrize("chunk", [3, 8192])
def test_pair_projection_gradients(operands, monkeypatch, chunk):
    monkeypatch.setattr(neighbour_ops, "BACKWARD_CHUNK", chunk)
    o = operands
    assert torch.autograd.gradcheck(lambda v, w: PairProjection.apply(v, o["rows"], o["query_rows"], w),
                                     (o["values"], o["weight"]))


def test_forward_values_match_the_plain_expressions(operands):
    o = {k: v.detach() for k, v in operands.items()}
    gathered = o["values"][o["rows"]]
    gate = o["hidden"] @ o["value_weight"].t() + o["value_bias"]
    mixed = (o["attention"].unsqueeze(-1) * gathered * gate).sum(0)
    got = NeighbourMix.apply(o["values"], o["rows"], o["hidden"], o["value_weight"], o["value_bias"], o["attention"])
    assert torch.allclose(got, mixed)
    projected = (gathered * o["values"][o["query_rows"]]) @ o["weight"].t()
    assert torch.allclose(PairProjection.apply(o["values"], o["rows"], o["query_rows"], o["weight"]), projected)
