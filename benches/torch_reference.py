#!/usr/bin/env python3
"""The PyTorch side of `just bench` (issue 9): the same measurements on the same machine.

A port of facebookresearch/DiT `models.py` (no class embedder; timm's Attention with fused
scaled-dot-product attention; tanh-GELU MLP; adaLN-Zero blocks), trained with the CondOT
flow-matching MSE and AdamW (lr 1e-4, weight decay 0.01), eager mode, f32, 2 threads, exactly
the definitions of benches/perf.rs. Prints one JSON object:

    {"torch": "2.15.0", "threads": 2, "train": samples/s, "sample": evaluations/s}

Usage: torch_reference.py CONFIG   (CONFIG: cpu_small or namo64)
"""

import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# name: (input, patch, hidden, depth, heads, training batch, timed training steps)
CONFIGS = {
    "cpu_small": (32, 4, 128, 4, 4, 64, 8),
    "namo64": (64, 4, 256, 6, 4, 16, 5),
}
IN_CHANNELS, OUT_CHANNELS, FREQ_DIM = 8, 1, 256
SAMPLE_BATCH, EULER_STEPS, SAMPLE_REPEATS = 16, 20, 3


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def pos_embed_2d(dim, grid):
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ii, jj = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for pos in (jj.reshape(-1), ii.reshape(-1)):
        args = pos[:, None].double() * omega[None]
        parts += [args.sin(), args.cos()]
    return torch.cat(parts, 1).float()[None]


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), s1, sc1))
        return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), s2, sc2))


class DiT(nn.Module):
    def __init__(self, size, patch, dim, depth, heads):
        super().__init__()
        self.patch, self.grid = patch, size // patch
        self.x_embedder = nn.Conv2d(IN_CHANNELS, dim, patch, patch)
        self.t_mlp = nn.Sequential(nn.Linear(FREQ_DIM, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.register_buffer("pos_embed", pos_embed_2d(dim, self.grid))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_linear = nn.Linear(dim, patch * patch * OUT_CHANNELS)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, t):
        half = FREQ_DIM // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        c = self.t_mlp(torch.cat([torch.cos(args), torch.sin(args)], 1))
        x = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_ada(c).chunk(2, dim=1)
        x = self.final_linear(modulate(self.norm_final(x), shift, scale))
        n, g, p = x.shape[0], self.grid, self.patch
        x = x.reshape(n, g, g, p, p, OUT_CHANNELS)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, OUT_CHANNELS, g * p, g * p)


def masks(shape):
    return (torch.rand(shape) >= 0.5).float() * 2 - 1


def coords(batch, size):
    line = torch.linspace(-1, 1, size)
    rows, cols = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([rows, cols])[None].expand(batch, 2, size, size)


def main():
    name = sys.argv[1]
    size, patch, dim, depth, heads, batch, steps = CONFIGS[name]
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = DiT(size, patch, dim, depth, heads)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    context = torch.cat([masks((batch, 5, size, size)), coords(batch, size)], 1)
    target = masks((batch, 1, size, size))

    def train_step():
        noise = torch.randn_like(target)
        t = torch.rand(batch)
        tt = t[:, None, None, None]
        x_t = tt * target + (1 - tt) * noise
        pred = model(torch.cat([context, x_t], 1), t)
        loss = F.mse_loss(pred, target - noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - start)
    train = batch / statistics.median(times)

    ctx = context[:SAMPLE_BATCH]
    with torch.no_grad():
        model(torch.cat([ctx, target[:SAMPLE_BATCH]], 1), torch.zeros(SAMPLE_BATCH))
        rates = []
        for _ in range(SAMPLE_REPEATS):
            x = torch.randn(SAMPLE_BATCH, 1, size, size)
            start = time.perf_counter()
            for i in range(EULER_STEPS):
                t = torch.full((SAMPLE_BATCH,), i / EULER_STEPS)
                x = x + model(torch.cat([ctx, x], 1), t) / EULER_STEPS
            rates.append(EULER_STEPS / (time.perf_counter() - start))
        sample = statistics.median(rates)
    print(json.dumps({"torch": torch.__version__, "threads": 2, "train": train, "sample": sample}))


if __name__ == "__main__":
    main()
