"""The two neighbour-gather products of the CiaoSR upsampler as autograd functions that
keep only the per-pixel maps and the indices for backward.

Gathering per-pixel features for four neighbours of every query makes tensors of
(4, queries, 10C); plain autograd would keep several of them (about 0.4 GB each for a
training batch of 16 x 2304 queries). These functions recompute the gathers in a
chunked backward instead, which is cheap (an index_select) and bounds the memory.
"""

from __future__ import annotations

import torch

BACKWARD_CHUNK = 8192  # queries per backward chunk: bounds the (4, chunk, D) temporaries


class NeighbourMix(torch.autograd.Function):
    """mixed[n] = sum_j attention[j, n] * values[rows[j, n]] * gate[j, n]  ->  (N, D), with the
    gate = hidden @ weight.T + bias computed here (the value MLP's last layer), so that only
    the narrow hidden activation, not the (4, N, D) gate, is kept for backward."""

    @staticmethod
    def forward(ctx, values, rows, hidden, weight, bias, attention):
        n = rows.shape[1]
        mixed = None
        for start in range(0, n, BACKWARD_CHUNK):
            part = slice(start, start + BACKWARD_CHUNK)
            gate = torch.nn.functional.linear(hidden[:, part], weight, bias)
            gathered = values.index_select(0, rows[:, part].reshape(-1)).view(*gate.shape).to(gate.dtype)
            chunk = gathered.mul_(gate).mul_(attention[:, part].to(gate.dtype).unsqueeze(-1)).sum(0)
            if mixed is None:
                mixed = chunk.new_empty(n, chunk.shape[-1])
            mixed[part] = chunk
        ctx.save_for_backward(values, rows, hidden, weight, bias, attention)
        return mixed

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        values, rows, hidden, weight, bias, attention = ctx.saved_tensors
        grad_values = torch.zeros(values.shape, dtype=torch.float32, device=values.device)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
        grad_attention = torch.empty(attention.shape, dtype=attention.dtype, device=attention.device)
        for start in range(0, rows.shape[1], BACKWARD_CHUNK):
            part = slice(start, start + BACKWARD_CHUNK)
            hidden_part = hidden[:, part].to(weight.dtype)
            gate = torch.nn.functional.linear(hidden_part, weight, bias)
            gathered = values.index_select(0, rows[:, part].reshape(-1)).view(*gate.shape).to(gate.dtype)
            g = grad[part].to(gate.dtype).unsqueeze(0)
            weighted = g * attention[:, part].to(gate.dtype).unsqueeze(-1)
            grad_gate = weighted * gathered
            grad_attention[:, part] = (g * gathered * gate).sum(-1).to(attention.dtype)
            grad_values.index_add_(0, rows[:, part].reshape(-1), (weighted * gate).reshape(-1, gate.shape[-1]).float())
            grad_hidden[:, part] = torch.matmul(grad_gate, weight).to(hidden.dtype)
            flat_grad_gate = grad_gate.reshape(-1, gate.shape[-1])
            grad_weight += torch.matmul(flat_grad_gate.t(), hidden_part.reshape(-1, hidden_part.shape[-1])).float()
            grad_bias += flat_grad_gate.sum(0).float()
        return (grad_values.to(values.dtype), None, grad_hidden, grad_weight.to(weight.dtype),
                grad_bias.to(bias.dtype), grad_attention)


class PairProjection(torch.autograd.Function):
    """out[j, n] = (values[rows[j, n]] * values[query_rows[n]]) @ weight.T  ->  (4, N, K).

    The element-wise product of a query's key feature with its neighbour's, projected by
    the key MLP's last layer (transposed), as the rearranged attention logit needs."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, rows: torch.Tensor, query_rows: torch.Tensor, weight: torch.Tensor):
        n = query_rows.shape[0]
        out = None
        for start in range(0, n, BACKWARD_CHUNK):
            part = slice(start, start + BACKWARD_CHUNK)
            matched = values.index_select(0, rows[:, part].reshape(-1)).view(4, -1, values.shape[-1])
            matched.mul_(values.index_select(0, query_rows[part]).unsqueeze(0))
            chunk = torch.matmul(matched.to(weight.dtype), weight.t())
            if out is None:
                out = chunk.new_empty(4, n, weight.shape[0])
            out[:, part] = chunk
        ctx.save_for_backward(values, rows, query_rows, weight)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        values, rows, query_rows, weight = ctx.saved_tensors
        grad_values = torch.zeros(values.shape, dtype=torch.float32, device=values.device)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, query_rows.shape[0], BACKWARD_CHUNK):
            part = slice(start, start + BACKWARD_CHUNK)
            rows_part, query_part = rows[:, part], query_rows[part]
            count = query_part.shape[0]
            neighbour = values.index_select(0, rows_part.reshape(-1)).view(4, count, -1)
            query = values.index_select(0, query_part).unsqueeze(0)
            g = grad[:, part].to(weight.dtype)
            grad_weight += torch.matmul(g.reshape(-1, g.shape[-1]).t(), (neighbour * query).reshape(-1, values.shape[-1]).to(weight.dtype)).float()
            grad_matched = torch.matmul(g, weight).to(values.dtype)  # (4, count, D)
            grad_values.index_add_(0, rows_part.reshape(-1), (grad_matched * query).reshape(-1, values.shape[-1]).float())
            grad_values.index_add_(0, query_part, (grad_matched * neighbour).sum(0).float())
        return grad_values.to(values.dtype), None, None, grad_weight.to(weight.dtype)
