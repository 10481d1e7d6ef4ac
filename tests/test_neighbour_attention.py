"""The upsampler's fused per-query function (attention over the four neighbours, then the
decoder): gradients checked numerically, and the forward equal to the plain expressions
it replaces."""

from __future__ import annotations

import pytest
import torch

from realciao.archs import neighbour_attention as fused
from realciao.archs.mlp import MLP

CHANNELS = 2  # keys 9C = 18 wide, values 10C = 20 wide


@pytest.fixture
def operands():
    torch.manual_seed(0)
    pixels, queries = 7, 9
    key_dim, value_dim = 9 * CHANNELS, 10 * CHANNELS
    key_mlp = MLP(key_dim + 4, key_dim, [5, 6]).double()
    value_mlp = MLP(value_dim + 4, value_dim, [4, 3, 5]).double()
    decoder = MLP(value_dim, 3, [6, 4]).double()
    values = torch.randn(pixels, value_dim, dtype=torch.float64)
    return {
        "values": values,
        "key_map": torch.randn(pixels, 5, dtype=torch.float64),
        "value_map": torch.randn(pixels, 4, dtype=torch.float64),
        "rows": torch.randint(0, pixels, (4, queries)),
        "query_rows": torch.randint(0, pixels, (queries,)),
        "position": torch.randn(4, queries, 4, dtype=torch.float64),
        "key_mlp": key_mlp,
        "value_mlp": value_mlp,
        "decoder": decoder,
    }


def plain(o, values, key_map, value_map):
    """The same function written with whole tensors and autograd."""
    def hidden(mlp, first_map):
        first = mlp.linears[0]
        z = (first_map[o["rows"]] + o["position"] @ first.weight[:, mlp.in_dim - 4:].t()).relu()
        return mlp.layers[2:-1](z)

    key_dim = o["key_mlp"].in_dim - 4
    keys = values[o["rows"], :key_dim]
    query = values[o["query_rows"], :key_dim]
    key_gate = o["key_mlp"].layers[-1](hidden(o["key_mlp"], key_map))
    attention = torch.softmax((query * keys * key_gate).sum(-1), dim=0)
    value_gate = o["value_mlp"].layers[-1](hidden(o["value_mlp"], value_map))
    return o["decoder"]((attention.unsqueeze(-1) * values[o["rows"]] * value_gate).sum(0))


def run(o, values, key_map, value_map):
    return fused.decode_queries(values, key_map, value_map, o["rows"], o["query_rows"], o["position"],
                                o["key_mlp"], o["value_mlp"], o["decoder"])


@pytest.mark.parametrize("chunk", [2, 4096])  # several chunks, and one
def test_forward_matches_the_plain_expressions(operands, monkeypatch, chunk):
    monkeypatch.setattr(fused, "CHUNK_QUERIES", chunk)
    o = operands
    got = run(o, o["values"], o["key_map"], o["value_map"])
    assert torch.allclose(got, plain(o, o["values"], o["key_map"], o["value_map"]), atol=1e-12)


@pytest.mark.parametrize("chunk", [2, 4096])
def test_gradients_match_autograd_of_the_plain_expressions(operands, monkeypatch, chunk):
    monkeypatch.setattr(fused, "CHUNK_QUERIES", chunk)
    o = operands
    params = [*o["key_mlp"].parameters(), *o["value_mlp"].parameters(), *o["decoder"].parameters()]
    inputs = [o[k].clone().requires_grad_() for k in ("values", "key_map", "value_map")]
    upstream = torch.randn(o["query_rows"].shape[0], 3, dtype=torch.float64)
    # first-layer biases are unused by both: the maps already include them
    expected = torch.autograd.grad((plain(o, *inputs) * upstream).sum(), inputs + params, materialize_grads=True)
    got = torch.autograd.grad((run(o, *inputs) * upstream).sum(), inputs + params, materialize_grads=True)
    for e, g in zip(expected, got):
        assert torch.allclose(e, g, atol=1e-10), (e - g).abs().max()


def test_gradcheck(operands, monkeypatch):
    monkeypatch.setattr(fused, "CHUNK_QUERIES", 4)
    o = operands
    inputs = tuple(o[k].clone().requires_grad_() for k in ("values", "key_map", "value_map"))
    assert torch.autograd.gradcheck(lambda *x: run(o, *x), inputs)


def test_bf16_autocast_runs_in_bf16_and_stays_close(operands):
    o = operands
    for name in ("key_mlp", "value_mlp", "decoder"):
        o[name].float()
    args = [o[k].float() for k in ("values", "key_map", "value_map")]
    reference = run({**o, "position": o["position"].float()}, *args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = run({**o, "position": o["position"].float()}, *args)
    assert low.dtype == torch.bfloat16
    assert (low.float() - reference).abs().max() < 0.05 * reference.abs().max()


@pytest.mark.parametrize("queries", [7, 60])  # every pair distinct (per-slot path), and repeated (shared)
def test_inference_shares_repeated_pixel_pairs_and_gives_the_same_function(operands, monkeypatch, queries):
    torch.manual_seed(1)
    o = dict(operands)
    pixels = o["values"].shape[0]
    if queries == pixels:  # query i in pixel i, its neighbours i+1 .. i+4: 28 distinct pairs
        o["query_rows"] = torch.arange(pixels)
        o["rows"] = (torch.arange(pixels) + torch.arange(1, 5).view(4, 1)) % pixels
    else:  # 240 slots over at most 49 pairs
        o["rows"] = torch.randint(0, pixels, (4, queries))
        o["query_rows"] = torch.randint(0, pixels, (queries,))
    o["position"] = torch.randn(4, queries, 4, dtype=torch.float64)
    shared = []
    real = fused.shared_pair_projection
    monkeypatch.setattr(fused, "shared_pair_projection", lambda *a, **k: shared.append(real(*a, **k)) or shared[-1])
    with torch.no_grad():
        got = run(o, o["values"], o["key_map"], o["value_map"])
    assert len(shared) == 1
    assert (shared[0] is not None) == (queries == 60)
    assert torch.allclose(got, plain(o, o["values"], o["key_map"], o["value_map"]), atol=1e-12)


def test_training_keeps_the_per_slot_path(operands, monkeypatch):
    """With autograd on, backward reads the per-slot projections: no sharing is attempted."""
    monkeypatch.setattr(fused, "shared_pair_projection", lambda *a, **k: pytest.fail("shared under autograd"))
    o = operands
    values = o["values"].clone().requires_grad_()
    run(o, values, o["key_map"], o["value_map"]).sum().backward()
    assert values.grad is not None
