"""Generation with and without a KV cache: the same tokens, and how much faster.

Run:  .venv/bin/python benchmarks/kv_cache.py [--quick] [--repeats N] [--threads N] [--checkpoint PATH]

Two GPTs with context 256 (vocabulary 96, float32, random weights): the course's model (4
layers, 4 heads, 128 dimensions) and nanoGPT's shakespeare-char model (6 layers, 6 heads, 384
dimensions, at half the repeats). Each generates 256 tokens after a 1-token prompt, batch 1,
with ``use_cache=True`` and ``use_cache=False``, from the same seed, greedily and by sampling
(temperature 1, top-k 40): the tokens must be identical. The last of the 256 tokens is
predicted from a window of 256 tokens, so the whole run stays inside the context window,
where the cache is used at every step.

Without a cache each step re-reads the whole sequence so far (1, 2, ..., 256 tokens); with
one, the prompt is read once and each step reads one token. The modes take turns, a warm-up
each and then ``--repeats`` runs; the table gives the median. Goal: at least 3 times faster.

For a model this small a cached step is mostly fixed cost, not arithmetic: a few dozen small
PyTorch operations and module calls per block, a few microseconds each. That is what bounds the
course model's speed-up, and why the generation path avoids per-step work it can do once: it
runs under ``torch.inference_mode``, checks its options once rather than at every step, keeps
each layer's fused q/k/v matrix in the layer's cache, splits q, k and v into heads with one
reshape, and appends to the cache with ``narrow(...).copy_``. Measured with this script on 2
cores of an otherwise idle Xeon (``taskset -c 0,1``, torch 2.11): course 4x128 3.55x greedy and
3.71x sampled; nanoGPT 6x384 5.3x and 5.8x.
``--checkpoint`` times a model saved by ``benchmarks/gpt_train.py`` instead (speed does
not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from attnedu.models import GPT, GPTConfig


def generate(model, prompt, n, use_cache, sampled, seed=0):
    kw = dict(temperature=1.0, top_k=40, seed=seed) if sampled else dict(temperature=0.0)
    return model.generate(prompt, n, use_cache=use_cache, **kw)


MODELS = {  # name: (n_layer, n_head, d_model); all with context 256 and a vocabulary of 96
    "course 4x128": (4, 4, 128),  # the model of chapter 6 and benchmarks/gpt_train.py
    "nanoGPT 6x384": (6, 6, 384),  # nanoGPT's shakespeare-char model
}


def run(name, model, repeats):
    config = model.config
    n_new = config.context  # a 1-token prompt + context new tokens: the last step reads context tokens
    prompt = torch.zeros(1, 1, dtype=torch.long)
    for sampled in (False, True):
        outputs = {mode: generate(model, prompt, n_new, mode, sampled) for mode in (False, True)}  # warm-up
        same = torch.equal(outputs[False], outputs[True])
        times = {False: [], True: []}
        for _ in range(repeats):
            for mode in (False, True):
                start = time.perf_counter()
                out = generate(model, prompt, n_new, mode, sampled)
                times[mode].append(time.perf_counter() - start)
                same = same and torch.equal(out, outputs[False])
        base = statistics.median(times[False])
        for mode in (False, True):
            med = statistics.median(times[mode])
            print(f"{name:<14} {model.num_parameters() / 1e6:>6.2f}M {'sampled' if sampled else 'greedy':<9} "
                  f"{'yes' if mode else 'no':<6} {n_new:>6} {med:>9.3f} {n_new / med:>9.0f} {base / med:>8.2f}x "
                  f"{str(same):>6}")
        assert same, f"{name}: cached and uncached generation gave different tokens"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--checkpoint", help="time a model saved by benchmarks/gpt_train.py instead "
                                             "(at its own context length)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.checkpoint:
        models = {"checkpoint": GPT.load(args.checkpoint)[0]}
    else:
        shapes = {"tiny 2x32": (2, 2, 32)} if args.quick else MODELS
        context = 32 if args.quick else 256
        models = {}
        for name, (n_layer, n_head, d_model) in shapes.items():
            torch.manual_seed(0)
            config = GPTConfig(vocab_size=96, context=context, n_layer=n_layer, n_head=n_head, d_model=d_model,
                               dropout=0.0, bias=False)
            models[name] = GPT(config).eval()
    repeats = 2 if args.quick else args.repeats

    first = next(iter(models.values())).config
    print(f"context {first.context}: {first.context} new tokens after a 1-token prompt, batch 1, float32; "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'model':<14} {'params':>7} {'decoding':<9} {'cache':<6} {'tokens':>6} {'median s':>9} {'tokens/s':>9} "
          f"{'speed-up':>9} {'same':>6}")
    for i, (name, model) in enumerate(models.items()):
        run(name, model, repeats if i == 0 else max(1, (repeats + 1) // 2))


if __name__ == "__main__":
    main()
