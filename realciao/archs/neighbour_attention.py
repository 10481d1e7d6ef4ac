"""The upsampler's per-query work (key and value MLPs over four neighbours, the attention
logits, the softmax, the attention-weighted mix and the decoder MLP) as one autograd
function that runs in chunks of queries, forward and backward.

Plain autograd on this path makes a dozen (4 x queries, up to 10C) tensors per step (about
0.4 GB each for a training batch of 16 x 2304 queries) and then streams every one of them
through memory several times in backward. Here each chunk's gathers, products, matmuls
and gradients stay a few MB, so they stay in cache; only the MLPs' hidden activations,
the logit projections and the attention are kept for backward, and the gathers (cheap
index_selects), the first layers' outputs and the value gate are redone there. The
chunked result is the same function.

The logit of neighbour j is <q, k_j * gate_j> with gate_j = W h_j + c, rearranged as
<(q * k_j) W, h_j> + <q * k_j, c>, so the 9C-wide key gate is never built. The projected
pair product (q * k_j) [W; c] depends only on the query's and the neighbour's LR pixels:
without autograd it is computed once per distinct pair in a chunk (9 per LR pixel at
integer scales, against 4 x scale^2 query-neighbour slots).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from realciao.archs.mlp import MLP

CHUNK_QUERIES = 2048  # queries per chunk: its (4 x chunk, 10C) temporaries are ~20 MB in fp32


@dataclass(frozen=True)
class Layout:
    key_dim: int  # leading columns of ``values`` that the keys and the query use (9C)
    key_hidden_layers: int  # hidden Linear layers after the first one, key MLP
    value_hidden_layers: int
    decoder_hidden_layers: int  # Linear layers before the last one, query (decoder) MLP


def decode_queries(
    values: torch.Tensor,
    key_map: torch.Tensor,
    value_map: torch.Tensor,
    rows: torch.Tensor,
    query_rows: torch.Tensor,
    position: torch.Tensor,
    key_mlp: MLP,
    value_mlp: MLP,
    decoder: MLP,
) -> torch.Tensor:
    """(P, D) per-pixel features, (P, H) per-pixel first-layer outputs of the key and value
    MLPs, (4, N) neighbour rows, (N,) query rows, (4, N, 4) positions -> (N, 3): the
    attention-mixed value of each query, decoded by ``decoder`` (the official imnet_q).

    The first layers' position columns and all later layers of the key and value MLPs
    come from the modules; their feature columns are already applied in ``key_map`` and
    ``value_map``."""
    key_dim = key_mlp.in_dim - 4
    layout = Layout(key_dim, len(key_mlp.linears) - 2, len(value_mlp.linears) - 2, len(decoder.linears) - 1)
    weights = [*mlp_weights(key_mlp, key_dim), *mlp_weights(value_mlp, value_mlp.in_dim - 4)]
    weights += [t for layer in decoder.linears for t in (layer.weight, layer.bias)]
    if torch.jit.is_tracing():  # an exported graph: one pass over every query, no chunk loop frozen in it
        return decode_in_one_pass(values, key_map, value_map, rows, query_rows, position, layout, weights)
    # ctx.needs_input_grad is set under no_grad too: whether backward can come is decided here
    backward_possible = torch.is_grad_enabled() and any(t.requires_grad for t in (values, key_map, value_map, *weights))
    return NeighbourAttention.apply(values, key_map, value_map, rows, query_rows, position, layout, backward_possible,
                                    *weights)


def decode_in_one_pass(values, key_map, value_map, rows, query_rows, position, layout: Layout,
                       flat_weights: list[torch.Tensor]) -> torch.Tensor:
    """``decode_queries`` without chunks and without autograd: what a traced (ONNX) graph runs."""
    dtype = values.dtype
    key_w, value_w, decoder_w = split_weights(flat_weights, layout, dtype)
    chunk = chunk_forward(values, key_map, value_map, rows, query_rows, position, key_w, value_w,
                          key_projection(key_w), layout.key_dim, dtype)
    return decoder_forward(chunk["mixed"], decoder_w)[0]


def split_weights(flat_weights, layout: Layout, dtype: torch.dtype) -> tuple[MLPWeights, MLPWeights, MLPWeights]:
    """The key, value and decoder MLPs' weights from ``decode_queries``' flat list, in ``dtype``."""
    key_w, rest = MLPWeights.split(list(flat_weights), layout.key_hidden_layers, dtype)
    value_w, rest = MLPWeights.split(rest, layout.value_hidden_layers, dtype)
    decoder_w, _ = MLPWeights.split(rest, layout.decoder_hidden_layers, dtype, position=False)
    return key_w, value_w, decoder_w


def key_projection(key_w: MLPWeights) -> torch.Tensor:
    """[W^T; c]: the pair product projected by it gives both terms of the logit."""
    return torch.cat([key_w.last.t(), key_w.last_bias.unsqueeze(0)], dim=0)


def mlp_weights(mlp: MLP, feature_dim: int) -> list[torch.Tensor]:
    """The first layer's position columns, then weight and bias of every later layer."""
    linears = mlp.linears
    out = [linears[0].weight[:, feature_dim:]]
    for layer in linears[1:]:
        out += [layer.weight, layer.bias]
    return out


def compute_dtype(reference: torch.Tensor) -> torch.dtype:
    device_type = reference.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return reference.dtype


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax, logit sums and gradient accumulators: at least fp32."""
    return torch.promote_types(dtype, torch.float32)


@dataclass
class MLPWeights:
    position: torch.Tensor | None  # (H0, 4): first layer's position columns; None for the decoder
    hidden: list[tuple[torch.Tensor, torch.Tensor]]  # Linear + ReLU layers
    last: torch.Tensor  # (out, H)
    last_bias: torch.Tensor

    @classmethod
    def split(cls, flat: list[torch.Tensor], hidden_layers: int, dtype: torch.dtype,
              position: bool = True) -> tuple[MLPWeights, list]:
        head = 1 if position else 0
        count = head + 2 * hidden_layers + 2
        own, rest = [w.to(dtype) for w in flat[:count]], flat[count:]
        hidden = [(own[head + 2 * i], own[head + 1 + 2 * i]) for i in range(hidden_layers)]
        return cls(own[0] if position else None, hidden, own[-2], own[-1]), rest


def first_layer(first_map, rows, position, weights: MLPWeights, dtype) -> torch.Tensor:
    """Post-ReLU output of the first layer for the gathered rows: the feature part comes
    precomputed per pixel, the position part is added here."""
    return first_map.index_select(0, rows).to(dtype).addmm_(position, weights.position.t()).relu_()


def relu_layers_forward(z: torch.Tensor, layers, kept: list[torch.Tensor]) -> torch.Tensor:
    """Linear + ReLU layers from ``z``; appends every output to ``kept`` and returns the last."""
    for weight, bias in layers:
        z = torch.addmm(bias, z, weight.t()).relu_()
        kept.append(z)
    return z


def relu_layers_backward(grad, kept, layers, grads: list[torch.Tensor]) -> torch.Tensor:
    """Back through Linear + ReLU layers whose input and output are ``kept[i]`` and
    ``kept[i + 1]``; accumulates weight and bias gradients (two per layer) into ``grads``
    and returns the gradient of ``kept[0]``."""
    for layer in range(len(layers) - 1, -1, -1):
        grad = relu_backward(grad, kept[layer + 1])
        grads[2 * layer] += torch.mm(grad.t(), kept[layer])
        grads[2 * layer + 1] += grad.sum(0)
        grad = torch.mm(grad, layers[layer][0])
    return grad


def decoder_forward(mixed: torch.Tensor, weights: MLPWeights) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """RGB of each query and the decoder's input and post-ReLU activations (for backward)."""
    kept = [mixed]
    z = relu_layers_forward(mixed, weights.hidden, kept)
    return torch.addmm(weights.last_bias, z, weights.last.t()), kept


def decoder_backward(grad, kept, weights: MLPWeights, grads: list[torch.Tensor]) -> torch.Tensor:
    """Back through the decoder; accumulates its parameter gradients (weight, bias per
    layer) into ``grads`` and returns the gradient of its input."""
    grads[-2] += torch.mm(grad.t(), kept[-1])
    grads[-1] += grad.sum(0)
    return relu_layers_backward(torch.mm(grad, weights.last), kept, weights.hidden, grads)


def hidden_forward(first_map, rows, position, weights: MLPWeights, dtype) -> list[torch.Tensor]:
    """Post-ReLU activations of every hidden layer for the gathered rows; the last one
    feeds the MLP's last layer."""
    kept = [first_layer(first_map, rows, position, weights, dtype)]
    relu_layers_forward(kept[0], weights.hidden, kept)
    return kept


def hidden_backward(grad, kept, position, weights: MLPWeights, grads: list[torch.Tensor]) -> torch.Tensor:
    """Back through the hidden layers; accumulates parameter gradients into ``grads``
    (position weight, then weight and bias per hidden layer) and returns the gradient of
    the first layer's output for the gathered rows."""
    grad = relu_layers_backward(grad, kept, weights.hidden, grads[1:])
    grad = relu_backward(grad, kept[0])
    grads[0] += torch.mm(grad.t(), position)
    return grad


def relu_backward(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU from its output, in one pass."""
    return torch.ops.aten.threshold_backward(grad, output, 0)


CHUNK_KEYS = ("projected", "attention")


class NeighbourAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, key_map, value_map, rows, query_rows, position, layout: Layout, keep: bool,
                *flat_weights):
        dtype = compute_dtype(values)
        with torch.autocast(values.device.type, enabled=False):
            key_w, value_w, decoder_w = split_weights(flat_weights, layout, dtype)
            projection = key_projection(key_w)
            # converted once here rather than per gathered chunk
            low_values, low_key_map, low_value_map = (t.to(dtype) for t in (values, key_map, value_map))
            n = query_rows.shape[0]
            decoded = values.new_empty(n, 3, dtype=dtype)
            kept = []
            for start in range(0, n, CHUNK_QUERIES):
                part = slice(start, start + CHUNK_QUERIES)
                chunk = chunk_forward(low_values, low_key_map, low_value_map, rows[:, part], query_rows[part],
                                      position[:, part], key_w, value_w, projection, layout.key_dim, dtype,
                                      shared_pairs=not keep)
                decoded[part], decoder_kept = decoder_forward(chunk["mixed"], decoder_w)
                if keep:  # the first layers' outputs are cheap to redo: not kept
                    kept += [*chunk["key_kept"][1:], *chunk["value_kept"][1:], *(chunk[k] for k in CHUNK_KEYS),
                             *decoder_kept]
        if keep:
            # intermediates go through save_for_backward too, so autograd frees them after backward
            ctx.save_for_backward(values, key_map, value_map, rows, query_rows, position, *flat_weights, *kept)
            ctx.layout = layout
            ctx.dtype = dtype
            ctx.weight_count = len(flat_weights)
        return decoded

    @staticmethod
    def backward(ctx, grad_decoded):
        values, key_map, value_map, rows, query_rows, position, *rest = ctx.saved_tensors
        flat_weights, kept = rest[: ctx.weight_count], rest[ctx.weight_count :]
        layout, dtype = ctx.layout, ctx.dtype
        wide = accumulate_dtype(dtype)
        key_w, value_w, decoder_w = split_weights(flat_weights, layout, dtype)
        # the scattered gradients accumulate in the compute dtype, as autocast's own backward would
        grad_values = torch.zeros(values.shape, dtype=dtype, device=values.device)
        grad_key_map = torch.zeros(key_map.shape, dtype=dtype, device=values.device)
        grad_value_map = torch.zeros(value_map.shape, dtype=dtype, device=values.device)
        grads = [torch.zeros(w.shape, dtype=wide, device=w.device) for w in flat_weights]
        low_values, low_key_map, low_value_map = (t.to(dtype) for t in (values, key_map, value_map))
        key_count = 1 + 2 * layout.key_hidden_layers + 2
        value_count = 1 + 2 * layout.value_hidden_layers + 2
        key_grads, value_grads = grads[:key_count], grads[key_count : key_count + value_count]
        decoder_grads = grads[key_count + value_count :]
        key_layers, value_layers = layout.key_hidden_layers, layout.value_hidden_layers
        own = key_layers + value_layers + len(CHUNK_KEYS)
        per_chunk = own + layout.decoder_hidden_layers + 1
        for index, start in enumerate(range(0, query_rows.shape[0], CHUNK_QUERIES)):
            part = slice(start, start + CHUNK_QUERIES)
            saved = kept[index * per_chunk : (index + 1) * per_chunk]
            chunk = dict(zip(CHUNK_KEYS, saved[key_layers + value_layers : own]))
            flat_rows = rows[:, part].reshape(-1)
            flat_position = position[:, part].reshape(-1, 4).to(dtype)
            chunk["key_kept"] = [first_layer(low_key_map, flat_rows, flat_position, key_w, dtype), *saved[:key_layers]]
            chunk["value_kept"] = [first_layer(low_value_map, flat_rows, flat_position, value_w, dtype),
                                   *saved[key_layers : key_layers + value_layers]]
            grad_mixed = decoder_backward(grad_decoded[part].to(dtype), saved[own:], decoder_w, decoder_grads)
            chunk_backward(grad_mixed, chunk, low_values, rows[:, part], query_rows[part],
                           position[:, part], key_w, value_w, layout.key_dim, dtype,
                           grad_values, grad_key_map, grad_value_map, key_grads, value_grads)
        weight_grads = [g.to(w.dtype) for g, w in zip(grads, flat_weights)]
        return (grad_values.to(values.dtype), grad_key_map.to(key_map.dtype), grad_value_map.to(value_map.dtype),
                None, None, None, None, None, *weight_grads)


def chunk_forward(values, key_map, value_map, rows, query_rows, position, key_w, value_w, projection, key_dim, dtype,
                  shared_pairs=False):
    m = query_rows.shape[0]
    flat_rows = rows.reshape(-1)
    flat_position = position.reshape(-1, 4).to(dtype)
    key_kept = hidden_forward(key_map, flat_rows, flat_position, key_w, dtype)
    gathered = values.index_select(0, flat_rows).to(dtype)  # (4m, D)
    projected = shared_pair_projection(values, rows, query_rows, projection, key_dim) if shared_pairs else None
    if projected is None:
        query = values.index_select(0, query_rows).to(dtype)  # (m, D)
        pair = gathered[:, :key_dim].view(4, m, key_dim) * query[:, :key_dim]
        projected = torch.matmul(pair, projection.t())  # (4, m, H + 1)
    hidden = key_kept[-1].view(4, m, -1)
    wide = accumulate_dtype(dtype)
    # sums in the compute dtype (they accumulate in fp32 inside; bf16 only rounds the result)
    logits = (projected[..., :-1] * hidden).sum(-1).to(wide) + projected[..., -1]
    attention = torch.softmax(logits, dim=0)  # over the 4 neighbours, in fp32

    value_kept = hidden_forward(value_map, flat_rows, flat_position, value_w, dtype)
    gate = torch.addmm(value_w.last_bias, value_kept[-1], value_w.last.t())  # (4m, D)
    weighted = gathered.mul_(gate).view(4, m, -1).mul_(attention.to(dtype).unsqueeze(-1))
    return {"mixed": weighted.sum(0), "key_kept": key_kept, "value_kept": value_kept, "projected": projected,
            "attention": attention}


def shared_pair_projection(values, rows, query_rows, projection, key_dim, most_distinct=0.75):
    """(4, m, H + 1) projected pair products, each distinct (query pixel, neighbour pixel)
    pair projected once; None when more than ``most_distinct`` of the 4m slots are distinct
    pairs (small scales, scattered queries), where sharing would only add gathers."""
    count = values.shape[0]
    pair_ids = (query_rows.unsqueeze(0) * count + rows).reshape(-1)
    distinct, inverse = torch.unique(pair_ids, return_inverse=True)
    if distinct.numel() > most_distinct * pair_ids.numel():
        return None
    pair = values.index_select(0, distinct % count)[:, :key_dim]
    pair.mul_(values[:, :key_dim].index_select(0, distinct // count))
    return torch.mm(pair, projection.t()).index_select(0, inverse).view(*rows.shape, -1)


def chunk_backward(grad, chunk, values, rows, query_rows, position, key_w, value_w, key_dim, dtype,
                   grad_values, grad_key_map, grad_value_map, key_grads, value_grads):
    m = query_rows.shape[0]
    flat_rows = rows.reshape(-1)
    flat_position = position.reshape(-1, 4).to(dtype)
    attention = chunk["attention"]  # (4, m) fp32
    gathered = values.index_select(0, flat_rows).to(dtype).view(4, m, -1)
    value_kept = chunk["value_kept"]
    # the value gate is redone (one matmul) rather than kept: it is the widest activation
    gate = torch.addmm(value_w.last_bias, value_kept[-1], value_w.last.t()).view(4, m, -1)

    # value path: mixed = sum_j a_j * v_j * gate_j
    grad_attention = (gathered * gate).mul_(grad).sum(-1).to(accumulate_dtype(dtype))  # (4, m)
    weighted_grad = grad * attention.to(dtype).unsqueeze(-1)  # (4, m, D)
    grad_gathered = (weighted_grad * gate).view(4 * m, -1)
    grad_gate = weighted_grad.mul_(gathered).view(4 * m, -1)
    value_grads[-2] += torch.mm(grad_gate.t(), value_kept[-1])
    value_grads[-1] += grad_gate.sum(0)
    grad_hidden = torch.mm(grad_gate, value_w.last)
    grad_value_map.index_add_(0, flat_rows, hidden_backward(grad_hidden, value_kept, flat_position, value_w,
                                                            value_grads))

    # softmax over the neighbours, then the logit <(q * k_j) W, h_j> + <q * k_j, c>
    grad_logits = attention * (grad_attention - (attention * grad_attention).sum(0, keepdim=True))
    grad_logits = grad_logits.to(dtype).unsqueeze(-1)  # (4, m, 1)
    projected = chunk["projected"]
    key_kept = chunk["key_kept"]
    hidden = key_kept[-1].view(4, m, -1)
    grad_projected = torch.cat([grad_logits * hidden, grad_logits], dim=-1).view(4 * m, -1)  # (4m, H + 1)
    grad_hidden = (grad_logits * projected[..., :-1]).view(4 * m, -1)
    keys = gathered[..., :key_dim]
    query = values.index_select(0, query_rows).to(dtype)[:, :key_dim]
    grad_projection = torch.mm(grad_projected.t(), (keys * query).view(4 * m, key_dim))  # (H + 1, Dk)
    key_grads[-2] += grad_projection[:-1].t()
    key_grads[-1] += grad_projection[-1]
    projection = key_projection(key_w)
    grad_pair = torch.mm(grad_projected, projection).view(4, m, key_dim)
    # the neighbours' share of the key gradient joins their value gradient: one scatter for both
    grad_gathered.view(4, m, -1)[..., :key_dim].addcmul_(grad_pair, query)
    grad_values.index_add_(0, flat_rows, grad_gathered)
    grad_query = torch.zeros(m, grad_values.shape[1], dtype=dtype, device=grad.device)
    grad_query[:, :key_dim] = (grad_pair * keys).sum(0)
    grad_values.index_add_(0, query_rows, grad_query)
    grad_key_map.index_add_(0, flat_rows, hidden_backward(grad_hidden, key_kept, flat_position, key_w,
                                                          key_grads))
