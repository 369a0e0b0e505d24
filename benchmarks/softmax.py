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

from attnedu import perf
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

    threads = torch.get_num_threads()
    print(f"{'implementation':<18} {'shape':<18} {'dtype':<8} {'median ms':>10} {'vs torch':>9}")
    results = []
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
                results.append({"implementation": name, "shape": str(shape), "dtype": np.dtype(dtype).name,
                                "ms": seconds * 1e3, "vs_torch": seconds / ref})

    def ratios(name, over):  # name's time / over's time, for each (shape, dtype)
        ms = {(r["shape"], r["dtype"], r["implementation"]): r["ms"] for r in results}
        return [ms[(r["shape"], r["dtype"], name)] / r["ms"] for r in results if r["implementation"] == over]

    ours, naive = ratios("attnedu.softmax", "torch.softmax"), ratios("naive numpy", "torch.softmax")
    stable = ratios("attnedu.softmax", "naive numpy")
    span = lambda v: f"{min(v):.2f}x" if len(v) == 1 else f"{min(v):.2f}x to {max(v):.2f}x"  # noqa: E731
    notes = [f"attnedu's softmax took {span(ours)} the time of `torch.softmax` on the same input, and "
             f"{span(stable)} the time of the naive NumPy softmax. The naive one skips the subtraction of the "
             "row maximum and attnedu's checks of the input for NaN and +inf, so that second ratio is what "
             "those safety steps cost."]
    if min(ours) > 1:
        notes.append(f"The naive NumPy softmax, which skips those steps, still took {span(naive)} the time of "
                     "`torch.softmax`: those safety steps alone do not explain the gap to torch.")
    shape_list = " and ".join(f"`{shape}`" for shape in shapes)
    perf.save(
        "softmax", quick=args.quick, packages=("numpy", "torch"),
        title="Softmax",
        about=(f"The softmax of chapters 1 and 2 over the last axis of inputs of shape {shape_list}, in float32 "
               f"and float64. Three versions: the course's `attnedu.functional.softmax` (NumPy, with the row "
               f"maximum subtracted first), a naive NumPy softmax without that step, and `torch.softmax`. "
               f"Each time is the median of {repeats} calls after a warm-up. The last column is the time "
               f"divided by torch's time on the same input."),
        settings={"repeats": repeats, "torch threads": threads},
        columns=[("implementation", "implementation"), ("shape", "shape"), ("dtype", "dtype"),
                 ("ms", "median ms", ".3f"), ("vs_torch", "vs torch", ".2f")],
        rows=results,
        plot={"kind": "bar", "label": ["implementation", "shape", "dtype"], "value": "ms",
              "group": "implementation", "xlabel": "median milliseconds per call (log scale)", "log": True},
        notes=notes,
    )


if __name__ == "__main__":
    main()
