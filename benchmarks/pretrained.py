"""Inference speed of chapter 7's pretrained models on the CPU: ours against the reference library.

Run:  .venv/bin/python benchmarks/pretrained.py [--quick] [--repeats N] [--threads N]
                                                [--part {all,encoder,decoder}]

* ``encoder``: all-MiniLM-L6-v2 on the course's attention (:class:`attnedu.pretrained.MiniLM`)
  against ``sentence_transformers.SentenceTransformer``, encoding the same sentences of mixed
  length (a few words up to more than 256 tokens, so truncation happens too) at batch 32.
  Unit: sentences per second. Goal: ours at least 0.8 times sentence-transformers.
* ``decoder``: SmolLM2-135M-Instruct on the course's attention against its reference, in
  new tokens per second (see :func:`bench_decoder`).

Each contender runs once as a warm-up, then ``--repeats`` times, the contenders taking turns so
that drifts of a shared machine's speed hit them alike; the table gives the median rate and
its ratio to the reference of the same part. On a busy machine, ``--threads 1`` gives steadier
numbers: with two threads, every operation waits for the slower one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from attnedu import perf


@dataclass
class Row:
    """One line of the table: a contender's median rate, and its ratio to its part's reference."""

    part: str  # "encoder" or "decoder"
    name: str  # e.g. "attnedu MiniLM"
    unit: str  # e.g. "sentences/s", "new tokens/s"
    median: float  # the median rate over the repeats (higher is faster)
    ratio: float | None = None  # median / the reference's median; None for the reference itself
    note: str = ""  # anything worth saying (batch size, number of items, ...)


def alternate(contenders: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    """Median rate (items per second) of each contender, timed in turns after one warm-up each.

    Each callable does one full run and returns how many items it processed.
    """
    for run in contenders.values():  # warm-up: first-call costs (allocations, caches) are not timed
        run()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            n = run()
            rates[name].append(n / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


# --------------------------------------------------------------------------- encoder
WORDS = (
    "attention weighs every token by how well its key matches the query and averages the values "
    "a transformer stacks attention and feed forward layers with residual connections and layer norm "
    "sentence embeddings place texts with similar meaning close together on the unit sphere "
    "café naïve résumé Zürich 注意力机制 الانتباه 🙂"
).split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` sentences of mixed length: mostly 5 to 40 words, one in eight long enough to be truncated
    at 256 tokens (those few dominate the time: a batch of them is 256 tokens wide)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(250, 400) if i % 8 == 0 else rng.randint(5, 40)
        out.append(" ".join(rng.choice(WORDS) for _ in range(length)))
    return out


def bench_encoder(args) -> list[Row]:
    """Sentences per second: attnedu's MiniLM against sentence-transformers, same sentences, batch 32."""
    from sentence_transformers import SentenceTransformer

    from attnedu.pretrained import MiniLM
    from attnedu.pretrained._locate import MINILM, locate

    folder = locate(MINILM)
    ours = MiniLM.load(folder)
    reference = SentenceTransformer(str(folder), device="cpu")
    texts = sentences(8 if args.quick else 256)  # --quick: one of them long enough to be truncated
    batch = 32

    # Same inputs, same outputs: a speed comparison is only fair between equal results.
    a = ours.encode(texts[:batch], batch_size=batch)
    b = reference.encode(texts[:batch], batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    diff = float(abs(a - b).max())
    assert diff < 1e-4, f"our embeddings differ from sentence-transformers' by {diff}"

    contenders = {
        "attnedu MiniLM": lambda: len(ours.encode(texts, batch_size=batch)),
        "sentence-transformers": lambda: len(
            reference.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
        ),
    }
    medians = alternate(contenders, args.repeats)
    ref = medians["sentence-transformers"]
    note = f"{len(texts)} sentences, batch {batch}, max diff {diff:.1e}"
    return [
        Row("encoder", "sentence-transformers", "sentences/s", ref, None, note),
        Row("encoder", "attnedu MiniLM", "sentences/s", medians["attnedu MiniLM"], medians["attnedu MiniLM"] / ref, note),
    ]


# --------------------------------------------------------------------------- decoder
def bench_decoder(args) -> list[Row]:
    """New tokens per second: attnedu's SmolLM2 (with its KV cache) against ``transformers``
    (with its cache) loading the same GGUF file, greedy, float32, batch 1.

    The same prompts (two plain, one chat-templated), the same number of new tokens each (64;
    4 with ``--quick``): the prompts are chosen so that neither model stops early, and the
    warm-up checks that both produce the same tokens. Each timed run generates for every prompt.
    """
    from attnedu.pretrained.smollm import SmolLM, load_reference

    ours = SmolLM.load()
    model, tokenizer = load_reference()
    n_new = 4 if args.quick else 64
    texts = [
        "Once upon a time, in a small village by the sea,",
        "The three most important ideas in physics are",
        ours.apply_chat_template("Explain what attention is in a neural network, in a few sentences."),
    ]
    prompts = [ours.encode(text) for text in texts]
    tensors = [torch.tensor([ids]) for ids in prompts]

    def run_ours() -> tuple[int, list]:
        outs = [ours.generate(ids, n_new).tolist() for ids in prompts]
        return sum(map(len, outs)), outs

    @torch.inference_mode()
    def run_reference() -> tuple[int, list]:
        outs = []
        for x in tensors:
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n_new, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            outs.append(out[0, x.shape[1]:].tolist())
        return sum(map(len, outs)), outs

    # Same inputs, same outputs: a speed comparison is only fair between equal results.
    a, b = run_ours()[1], run_reference()[1]
    assert a == b, f"our greedy tokens differ from transformers': {a} vs {b}"
    assert all(len(x) == n_new for x in a), f"a prompt stopped early: {[len(x) for x in a]} new tokens"

    contenders = {
        "attnedu SmolLM": lambda: run_ours()[0],
        "transformers": lambda: run_reference()[0],
    }
    medians = alternate(contenders, args.repeats)
    ref = medians["transformers"]
    note = f"{len(prompts)} prompts ({min(map(len, prompts))}-{max(map(len, prompts))} tokens) x {n_new} new, greedy"
    return [
        Row("decoder", "transformers", "new tokens/s", ref, None, note),
        Row("decoder", "attnedu SmolLM", "new tokens/s", medians["attnedu SmolLM"], medians["attnedu SmolLM"] / ref, note),
    ]


# --------------------------------------------------------------------------- main
def print_table(rows: list[Row]) -> None:
    print(f"{'part':<8} {'contender':<24} {'median':>10} {'unit':<13} {'vs ref':>7}  note")
    for r in rows:
        ratio = "(ref)" if r.ratio is None else f"{r.ratio:.2f}x"
        print(f"{r.part:<8} {r.name:<24} {r.median:>10.1f} {r.unit:<13} {ratio:>7}  {r.note}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few sentences and tokens (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender (default 5; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--part", choices=("all", "encoder", "decoder"), default="all")
    args = parser.parse_args(argv)
    if args.quick and args.repeats == parser.get_default("repeats"):
        args.repeats = 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.repeats} timed runs each, "
          "contenders alternating")
    rows: list[Row] = []
    if args.part in ("all", "encoder"):
        rows += bench_encoder(args)
    if args.part in ("all", "decoder"):
        rows += bench_decoder(args)
    print_table(rows)

    reference = {"encoder": "sentence-transformers", "decoder": "transformers"}
    ours = {r.part: r for r in rows if r.ratio is not None}
    goals, notes = [], []
    if "encoder" in ours:
        goals.append({"text": "our MiniLM at least 0.8x the sentences per second of sentence-transformers",
                      "measured": ours["encoder"].ratio, "target": 0.8, "unit": "x", "higher_is_better": True})
    for part, r in ours.items():
        what = {"encoder": "the same embeddings (to within 1e-4)", "decoder": "the same greedy tokens"}[part]
        notes.append(f"{r.name} ran at {r.ratio:.2f}x the {r.unit} of {reference[part]}. Before timing, the "
                     f"script checks that both give {what}."
                     + (" It does not measure where the difference comes from." if r.ratio < 1 else ""))
    sizes = {r.part: r.note for r in rows}
    parts = []
    if "encoder" in sizes:
        parts.append("the encoder all-MiniLM-L6-v2 (`attnedu.pretrained.MiniLM`) against sentence-transformers, "
                     f"in sentences per second ({sizes['encoder'].rsplit(', max diff', 1)[0]}; sentences of mixed "
                     "length, some cut at 256 tokens)")
    if "decoder" in sizes:
        parts.append("the decoder SmolLM2-135M-Instruct (`attnedu.pretrained.smollm.SmolLM`, with its KV cache) "
                     "against Hugging Face transformers loading the same GGUF file, in new tokens per second "
                     f"({sizes['decoder']}, float32, batch 1)")
    perf.save(
        "pretrained", quick=args.quick,
        packages=("numpy", "torch", "sentence-transformers", "transformers", "gguf"),
        title="Pretrained models on the CPU",
        about=("Inference speed of chapter 7's pretrained models on the course's own attention, against the "
               "reference libraries, on the CPU: " + "; and ".join(parts) + ". "
               f"Each contender runs once as a warm-up, then {args.repeats} times, the contenders taking turns. "
               "The table gives the median rate and its ratio to the reference of the same part."),
        settings={"threads": torch.get_num_threads(), "repeats": args.repeats, "part": args.part},
        columns=[("part", "part"), ("name", "contender"), ("median", "median", ",.1f"), ("unit", "unit"),
                 ("vs_ref", "vs reference (x)", ".2f"), ("note", "note")],
        rows=[{"part": r.part, "name": r.name, "median": r.median, "unit": r.unit,
               "vs_ref": 1.0 if r.ratio is None else r.ratio, "note": r.note,
               "who": "reference" if r.ratio is None else "attnedu"} for r in rows],
        plot={"kind": "bar", "label": ["part", "name"], "value": "vs_ref", "group": "who",
              "xlabel": "speed relative to the reference library of the same part (reference = 1)", "log": False},
        goals=goals, notes=notes,
    )


if __name__ == "__main__":
    main()
