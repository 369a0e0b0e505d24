"""Forward plus backward time of multi-head attention on the CPU: attnedu against torch.

Run:  .venv/bin/python benchmarks/attention.py [--quick] [--repeats N]

Self-attention at batch 8, 1024 tokens, 768 dimensions, 12 heads, float32, in training
mode, for three modules with the same weights:

* ``attnedu``: ``attnedu.nn.MultiHeadAttention`` (this course's module);
* ``torch MHA``: ``torch.nn.MultiheadAttention(batch_first=True)``;
* ``sdpa module``: a minimal module, one fused input projection, then
  ``scaled_dot_product_attention``, then the output projection.

Each configuration runs once as a warm-up and then ``--repeats`` times, the modules taking
turns so that drifts of the machine's speed hit them alike; the table gives the median and
the ratio to torch's module. The goal: attnedu at most 1.1 times torch MHA with
need_weights=False. need_weights=True (the explicit path, which also returns the weights)
is timed too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from attnedu import perf
from attnedu.nn import MultiHeadAttention


class SDPAAttention(nn.Module):
    """The smallest multi-head self-attention on top of scaled_dot_product_attention."""

    def __init__(self, torch_mha: nn.MultiheadAttention):
        super().__init__()
        self.h = torch_mha.num_heads
        self.in_proj = nn.Linear(torch_mha.embed_dim, 3 * torch_mha.embed_dim)
        self.out_proj = nn.Linear(torch_mha.embed_dim, torch_mha.embed_dim)
        with torch.no_grad():
            self.in_proj.weight.copy_(torch_mha.in_proj_weight)
            self.in_proj.bias.copy_(torch_mha.in_proj_bias)
            self.out_proj.load_state_dict(torch_mha.out_proj.state_dict())

    def forward(self, x, need_weights=False):
        B, T, E = x.shape
        q, k, v = self.in_proj(x).view(B, T, 3, self.h, E // self.h).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, dh)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, E)), None


def step(module, x, need_weights):
    out, _ = module(x, x, x, need_weights=need_weights) if not isinstance(module, SDPAAttention) else module(x)
    out.sum().backward()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    B, T, E, H = (2, 32, 64, 4) if args.quick else (8, 1024, 768, 12)
    repeats = 2 if args.quick else args.repeats
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(E, H, batch_first=True)
    modules = {"attnedu": MultiHeadAttention.from_torch(ref), "torch MHA": ref, "sdpa module": SDPAAttention(ref)}
    x = torch.randn(B, T, E, requires_grad=True)

    # the three modules compute the same thing
    with torch.no_grad():
        a, _ = modules["attnedu"](x, x, x, need_weights=False)
        b, _ = ref(x, x, x, need_weights=False)
        c, _ = modules["sdpa module"](x)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)

    threads = torch.get_num_threads()
    print(f"B={B} T={T} E={E} H={H} float32, forward + backward, {threads} threads, "
          f"torch {torch.__version__}")
    print(f"{'module':<13} {'need_weights':<13} {'median s':>9} {'vs torch MHA':>13}")
    rows = []
    for need_weights in (False, True):
        names = [n for n in modules if not (need_weights and n == "sdpa module")]
        times = {n: [] for n in names}
        for n in names:  # warm-up
            step(modules[n], x, need_weights)
        for _ in range(repeats):
            for n in names:
                start = time.perf_counter()
                step(modules[n], x, need_weights)
                times[n].append(time.perf_counter() - start)
        ref_time = statistics.median(times["torch MHA"])
        for n in names:
            med = statistics.median(times[n])
            print(f"{n:<13} {str(need_weights):<13} {med:>9.3f} {med / ref_time:>12.2f}x")
            rows.append({"module": n, "need_weights": str(need_weights), "case": f"need_weights={need_weights}",
                         "seconds": med, "vs_torch": med / ref_time,
                         "who": "attnedu" if n == "attnedu" else "reference"})

    ratio = {(r["module"], r["need_weights"]): r["vs_torch"] for r in rows}
    fast, explicit, sdpa = ratio[("attnedu", "False")], ratio[("attnedu", "True")], ratio[("sdpa module", "False")]
    notes = [f"With need_weights=False attnedu took {fast:.2f}x the time of torch's module, and the minimal "
             f"module on `scaled_dot_product_attention` took {sdpa:.2f}x."]
    if explicit > 1:
        notes.append(f"With need_weights=True, the explicit path that also returns the attention weights, "
                     f"attnedu took {explicit:.2f}x the time of torch's module on the same path.")
    perf.save(
        "attention", quick=args.quick, packages=("torch",),
        title="Multi-head attention",
        about=(f"One training step, forward and backward, of multi-head self-attention (chapter 4) on the CPU: "
               f"batch {B}, {T:,} tokens, {E} dimensions, {H} heads, float32. Three modules with the same "
               "weights: the course's `attnedu.nn.MultiHeadAttention`, PyTorch's `nn.MultiheadAttention`, and "
               "a minimal module that calls `scaled_dot_product_attention` between its two projections. "
               "With need_weights=True the modules also return the attention weights; the minimal module "
               f"cannot, so it is timed only without. Each time is the median of {repeats} runs after a "
               "warm-up, the modules taking turns. The last column is the time divided by torch's."),
        settings={"repeats": repeats, "threads": threads},
        columns=[("module", "module"), ("need_weights", "need_weights"), ("seconds", "median s", ".3f"),
                 ("vs_torch", "vs torch MHA", ".2f")],
        rows=rows,
        plot={"kind": "bar", "label": ["module", "case"], "value": "seconds", "group": "module",
              "xlabel": "median seconds per forward + backward step", "log": False},
        goals=[{"text": "attnedu at most 1.1x the time of torch's MultiheadAttention (need_weights=False)",
                "measured": fast, "target": 1.1, "unit": "x", "higher_is_better": False}],
        notes=notes,
    )


if __name__ == "__main__":
    main()
