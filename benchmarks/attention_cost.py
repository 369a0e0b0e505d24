"""Time and peak memory of attention as the sequence grows: plain, tiled, and torch's two CPU backends.

Run:  .venv/bin/python benchmarks/attention_cost.py [--quick] [--causal] [--repeats N] [--threads N] [--json PATH]

One head of self-attention (B=1, H=1, d=64, float32) at T = 512, 1024, 2048, 4096, 8192 tokens
(``--quick``: 256 and 512 only), for four kernels of ``attnedu.efficient.measure.ATTENTION_KERNELS``:

* ``plain``: ``attnedu.efficient.plain_attention``, the explicit ``(T, T)`` scores and softmax;
* ``flash``: ``attnedu.efficient.flash_attention``, tiles of 128 with the online softmax;
* ``sdpa_math``: ``torch.nn.functional.scaled_dot_product_attention`` with only ``SDPBackend.MATH``;
* ``sdpa_flash``: the same with only ``SDPBackend.FLASH_ATTENTION`` (torch's tiled CPU kernel).

Each (kernel, T) runs in its own fresh child process (``peak_memory``): one call whose peak
resident memory above the child's baseline is the memory column, then a warm-up and ``--repeats``
calls whose median is the time column. The last lines fit the exponent ``p`` of ``cost ~ T^p``
(time: 2 for all four, the work is the same; memory: 2 for the explicit paths, at most 1 for the
tiled ones, whose extra memory is the output and a few tiles and can round to 0 pages at small T).
The table is saved through ``attnedu.perf.save`` (``benchmarks/results/attention_cost.json``, for the
book's performance page); ``--json PATH`` also writes every child's full result (each way of reading
the peak, the baseline) there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from attnedu import perf
from attnedu.efficient.measure import ATTENTION_KERNELS, MiB, fit_exponent, peak_memory, projected_bytes

KERNELS = ("plain", "flash", "sdpa_math", "sdpa_flash")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T = 256 and 512 only (a smoke test)")
    parser.add_argument("--causal", action="store_true", help="causal attention (flash skips half the tiles)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per cell (default 3; --quick: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child (default 1)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every child's full result (each way of reading the peak) here")
    args = parser.parse_args(argv)
    assert set(KERNELS) <= set(ATTENTION_KERNELS)
    lengths = (256, 512) if args.quick else (512, 1024, 2048, 4096, 8192)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    B, H, d = 1, 1, 64

    print(f"B={B} H={H} d={d} float32, causal={args.causal}, {args.threads} thread(s), torch {torch.__version__}; "
          "one fresh process per cell; memory = peak RSS above the process's baseline")
    print(f"{'T':>6} {'kernel':<11} {'median s':>9} {'peak MiB':>9} {'(T,T) MiB':>10}")
    rows = []
    for T in lengths:
        for kernel in KERNELS:
            r = peak_memory(kernel, T=T, B=B, H=H, d=d, causal=args.causal, threads=args.threads,
                            repeats=repeats)
            if r["status"] != "ok":
                print(f"{T:>6} {kernel:<11} {r['status']}")
            else:
                print(f"{T:>6} {kernel:<11} {r['median_seconds']:>9.4f} {r['peak_bytes'] / MiB:>9.2f} "
                      f"{projected_bytes(T, B, H) / MiB:>10.1f}")
            rows.append(r)

    print(f"\nexponent p of cost ~ T^p over T = {lengths[0]}..{lengths[-1]}")
    print(f"{'kernel':<11} {'time p':>7} {'memory p':>9}")
    exponents = {}
    for kernel in KERNELS:
        ok = [r for r in rows if r["kernel"] == kernel and r["status"] == "ok"]
        Ts = [r["T"] for r in ok]
        p_time = fit_exponent(Ts, [r["median_seconds"] for r in ok]) if len(ok) >= 2 else None
        mem = [r for r in ok if r["peak_bytes"] > 0]  # a tiled kernel's few KiB can round to 0 pages
        p_mem = fit_exponent([r["T"] for r in mem], [r["peak_bytes"] for r in mem]) if len(mem) >= 2 else None
        exponents[kernel] = {"time": p_time, "memory": p_mem}
        fmt = lambda p: "n/a" if p is None else f"{p:.2f}"  # noqa: E731
        print(f"{kernel:<11} {fmt(p_time):>7} {fmt(p_mem):>9}")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"B": B, "H": H, "d": d, "dtype": "float32", "causal": args.causal,
                                         "threads": args.threads, "torch": torch.__version__, "rows": rows,
                                         "exponents": exponents}, indent=1) + "\n")
        print(f"saved {args.json}")

    table = [{"T": r["T"], "kernel": r["kernel"], "who": "attnedu" if r["kernel"] in ("plain", "flash") else "torch",
              "median_s": r["median_seconds"] if r["status"] == "ok" else None,
              "peak_mib": r["peak_bytes"] / MiB if r["status"] == "ok" else None,
              "scores_mib": projected_bytes(r["T"], B, H) / MiB, "status": r["status"]} for r in rows]
    columns = [("T", "T", ",d"), ("kernel", "kernel"), ("median_s", "median s", ".4f"),
               ("peak_mib", "peak MiB", ".2f"), ("scores_mib", "(T,T) MiB", ".1f")]
    if any(r["status"] != "ok" for r in rows):
        columns.append(("status", "status"))
    notes = [f"Fitted exponent p of time ~ T^p over T = {lengths[0]:,} to {lengths[-1]:,}: "
             + ", ".join(f"`{k}` {fmt(e['time'])}" for k, e in exponents.items())
             + "; of peak memory: " + ", ".join(f"`{k}` {fmt(e['memory'])}" for k, e in exponents.items())
             + ". All four do the same work, O(T² d), so the time exponents should be near 2. The memory exponent "
             "should be near 2 for the explicit paths and at most 1 for the tiled ones, whose extra memory is "
             "the output and a few tiles (it can round to 0 pages at small T, and such cells are left out "
             "of the fit)."]
    ok = {(r["kernel"], r["T"]): r for r in table if r["status"] == "ok"}
    last = lengths[-1]
    for ours, theirs in (("plain", "sdpa_math"), ("flash", "sdpa_flash")):
        if (ours, last) in ok and (theirs, last) in ok:
            a, b = ok[(ours, last)], ok[(theirs, last)]
            ratio = a["median_s"] / b["median_s"]
            if ratio > 1:
                notes.append(f"At T = {last:,}, `{ours}` took {ratio:.2f}x the time of torch's `{theirs}` "
                             f"({a['median_s']:.4f} s against {b['median_s']:.4f} s)"
                             + (". `flash` runs its loops over tiles of 128 in Python, a few PyTorch calls "
                                "per tile; `sdpa_flash` is torch's own tiled kernel." if ours == "flash" else "."))
    failed = [r for r in table if r["status"] != "ok"]
    if failed:
        notes.append("Cells that did not finish: " + ", ".join(f"`{r['kernel']}` at T = {r['T']:,} ({r['status']})"
                                                               for r in failed) + ".")
    perf.save(
        "attention_cost", quick=args.quick, packages=("torch",),
        title="The cost of attention as the sequence grows",
        about=(f"Time and peak memory of one head of self-attention (chapter 9) as the sequence grows: "
               f"B = {B}, H = {H}, d = {d}, float32, {'causal' if args.causal else 'not causal'}, at T = "
               + ", ".join(f"{t:,}" for t in lengths) + " tokens. Four kernels: the course's `plain` attention "
               "(the explicit (T, T) scores and softmax) and `flash` (tiles of 128 with the online softmax), "
               "and torch's `scaled_dot_product_attention` restricted to its MATH backend (`sdpa_math`) or its "
               "tiled FLASH_ATTENTION backend (`sdpa_flash`). Each cell runs in a fresh process with "
               f"{args.threads} torch thread(s): one call gives the peak resident memory above the process's "
               f"baseline, then a warm-up and {repeats} timed call(s) give the median time. The (T,T) column "
               "is the size of one float32 score matrix, for comparison."),
        settings={"repeats": repeats, "threads": args.threads, "causal": args.causal},
        columns=columns, rows=table,
        plot={"kind": "line", "x": "T", "y": "median_s", "series": "kernel", "xlabel": "sequence length T (tokens)",
              "ylabel": "median seconds per call", "logx": True, "logy": True},
        notes=notes,
    )


if __name__ == "__main__":
    main()
