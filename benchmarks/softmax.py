"""How fast is attnedu's softmax? Compare it with a naive NumPy softmax and torch.softmax.

Run:  .venv/bin/python benchmarks/softmax.py [--quick]

Prints one row per (implementation, shape, dtype): the median time of repeated calls and the
ratio to torch.softmax on the same input. The naive version is the same computation without
the max subtraction, so the gap between it and attnedu is what numerical stability costs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from attnedu.functional import softmax


def naive_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke test)")
    args = parser.parse_args(argv)
    shapes = [(64, 64)] if args.quick else [(1024, 1024), (8, 12, 512, 512)]
    repeats = 3 if args.quick else 20
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(0)

    print(f"{'implementation':<18} {'shape':<18} {'dtype':<8} {'median ms':>10} {'vs torch':>9}")
    for shape in shapes:
        for dtype in (np.float32, np.float64):
            x = rng.normal(size=shape).astype(dtype)
            xt = torch.from_numpy(x)
            ref = median_seconds(lambda: torch.softmax(xt, dim=-1), repeats)
            np.testing.assert_allclose(softmax(x), torch.softmax(xt, dim=-1).numpy(), rtol=1e-5, atol=1e-6)
            rows = [
                ("attnedu.softmax", median_seconds(lambda: softmax(x), repeats)),
                ("naive numpy", median_seconds(lambda: naive_softmax(x), repeats)),
                ("torch.softmax", ref),
            ]
            for name, seconds in rows:
                print(f"{name:<18} {str(shape):<18} {np.dtype(dtype).name:<8} {seconds * 1e3:>10.3f} "
                      f"{seconds / ref:>8.2f}x")


if __name__ == "__main__":
    main()
