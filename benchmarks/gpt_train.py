"""Train nanoGPT's documented CPU configuration on the Python corpus, and time it.

Run:  .venv/bin/python benchmarks/gpt_train.py [--quick] [--iters N] [--threads N] [--save PATH]

The configuration of nanoGPT's README for a laptop CPU: 4 layers, 4 heads, 128 dimensions,
context 64, batch 12, 2,000 iterations, dropout 0, no biases (nanoGPT's default); AdamW,
learning rate 1e-3 with 100 warm-up steps and cosine decay to 1e-4, beta2 0.99, weight decay
0.1, gradient clipping at 1.0; evaluations every 250 iterations on 20 batches. The corpus is
:func:`attnedu.corpus.python_corpus` (the last 10% held out for validation).

For reference (issue 4): nanoGPT itself, with this configuration, on these 2-core machines,
on a 1.1 MB corpus of Python standard-library source, took 1 min 51 s (evaluations included)
and reached a validation loss of 1.57.

``--save PATH`` writes a checkpoint (weights, config, vocabulary; float16 if float32 would
exceed 5 MB) that :meth:`attnedu.models.GPT.load` reads, and prints the command that
reproduces it. The checkpoint chapter 6 loads, ``attnedu/data/gpt-python-2000.pt``
(:data:`attnedu.models.SHIPPED_CHECKPOINT`, 3.2 MB), was made on Python 3.11 with

    .venv/bin/python benchmarks/gpt_train.py --threads 1 --save attnedu/data/gpt-python-2000.pt

(one thread, so that the floating-point sums, and so the weights, do not depend on the number
of cores; it took 162 s on a busy 2-core machine and reached validation loss 1.58).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from attnedu import perf
from attnedu.corpus import CharTokenizer, python_corpus, train_val_split
from attnedu.models import GPT, GPTConfig
from attnedu.train import lm_batches, lm_losses, train

MAX_CHECKPOINT_BYTES = 5 * 1024 * 1024


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (a smoke test, a few seconds)")
    parser.add_argument("--iters", type=int, default=2000, help="training iterations (default 2000)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the core count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", help="write a checkpoint of the trained model here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.quick:
        text = python_corpus(max_chars=100_000)
        dims = dict(n_layer=2, n_head=2, d_model=32, context=32)
        iters, batch_size, eval_interval, eval_iters, warmup = 30, 4, 15, 2, 5
    else:
        text = python_corpus()
        dims = dict(n_layer=4, n_head=4, d_model=128, context=64)
        iters, batch_size, eval_interval, eval_iters, warmup = args.iters, 12, 250, 20, min(100, args.iters)
    tok = CharTokenizer(text)
    train_ids, val_ids = train_val_split(tok.encode(text), 0.1)
    config = GPTConfig(vocab_size=tok.vocab_size, dropout=0.0, bias=False, **dims)

    torch.manual_seed(args.seed)
    model = GPT(config)
    print(f"corpus: python_corpus(), {len(text):,} characters, vocabulary {tok.vocab_size} "
          f"(Python {platform.python_version()}); {len(train_ids):,} train / {len(val_ids):,} val tokens")
    print(f"model: {config}, {model.num_parameters():,} parameters")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")

    losses = lm_losses(model, {"train": train_ids, "val": val_ids}, batch_size=batch_size, context=config.context,
                       eval_iters=eval_iters, seed=args.seed + 1)
    history = train(model, lm_batches(train_ids, batch_size, config.context), iters=iters, lr=1e-3, warmup=warmup,
                    min_lr=1e-4, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_fn=losses,
                    eval_every=eval_interval, seed=args.seed, progress=True)

    print()
    print(f"{'iters':>6} {'median s/iter':>14} {'tokens/s':>9} {'wall s':>7} {'train loss':>11} {'val loss':>9}")
    print(f"{len(history.loss):>6} {statistics.median(history.iter_time):>14.4f} {history.tokens_per_s:>9,.0f} "
          f"{history.wall_time:>7.1f} {history.train_loss[-1]:>11.4f} {history.val_loss[-1]:>9.4f}")
    print("(wall s includes the evaluations; tokens/s counts training iterations only)")

    with torch.no_grad():
        prompt = torch.tensor([tok.encode("def ")])
        sample = model.generate(prompt, 200, temperature=0.8, seed=0)
    print("\nsample (temperature 0.8):\n" + "def " + tok.decode(sample[0]))

    save_result(args, history, config, model.num_parameters(), len(text), batch_size, eval_interval, eval_iters,
                warmup, argv=argv)

    if args.save:
        n_bytes = 4 * model.num_parameters()
        dtype = torch.float16 if n_bytes > MAX_CHECKPOINT_BYTES - 100_000 else None
        args_given = argv if argv is not None else sys.argv[1:]
        command = " ".join([".venv/bin/python", "benchmarks/gpt_train.py", *args_given])
        model.save(args.save, dtype=dtype, vocab=tok.chars, iters=len(history.loss),
                   train_loss=history.train_loss[-1], val_loss=history.val_loss[-1],
                   python_version=platform.python_version(), torch_version=str(torch.__version__), command=command,
                   created=time.strftime("%Y-%m-%d"),
                   # the loss curve, which chapter 13 logs to MLflow (attnedu.governance.checkpoint_record)
                   history={"eval_iters": list(history.eval_iters), "train_loss": list(history.train_loss),
                            "val_loss": list(history.val_loss)})
        size = os.path.getsize(args.save)
        print(f"\nsaved {args.save} ({size / 1e6:.2f} MB, {'float16' if dtype else 'float32'} weights)")
        print(f"reproduce with: {command}")
        print("(the corpus is this Python's standard library: another Python version gives a slightly different one)")


def save_result(args, history, config, n_params, n_chars, batch_size, eval_interval, eval_iters, warmup,
                argv=None) -> None:
    """The result for the book's performance page: the loss curve, and the speed in the notes."""
    rows = [{"iteration": it, "split": split, "loss": losses[i]}
            for i, it in enumerate(history.eval_iters)
            for split, losses in (("train", history.train_loss), ("validation", history.val_loss))]
    threads = torch.get_num_threads()
    notes = [f"Speed: a median of {statistics.median(history.iter_time):.4f} s per iteration, "
             f"{history.tokens_per_s:,.0f} tokens per second over the training iterations; "
             f"{history.wall_time:.1f} s of wall time with the evaluations. Final loss: train "
             f"{history.train_loss[-1]:.4f}, validation {history.val_loss[-1]:.4f}."]
    if history.stopped_early:
        notes.append(f"The run stopped early, after {len(history.loss)} iterations: "
                     "`$ATTNEDU_MAX_TRAIN_SECONDS` capped it.")
    nanogpt = not args.quick and args.iters == 2000 and not history.stopped_early
    if nanogpt:
        notes.append("For reference (issue 4): nanoGPT itself, with this configuration, on a 2-core machine of "
                     "the kind the course is tested on, on a 1.1 MB corpus of Python standard-library source, "
                     "took 111 s (evaluations included) and reached a validation loss of 1.57. This run took "
                     f"{history.wall_time:.0f} s with {threads} torch thread{'s' if threads > 1 else ''} and "
                     f"reached {history.val_loss[-1]:.2f}.")
    recipe = ("nanoGPT's configuration for a laptop CPU" if not args.quick else
              "a tiny configuration for a smoke test (the full run uses nanoGPT's configuration for a laptop CPU)")
    # The result must not depend on --save (a checkpoint is a by-product): its command leaves it out.
    given, kept, skip = (sys.argv[1:] if argv is None else argv), [], False
    for a in given:
        if skip:
            skip = False
        elif a == "--save":
            skip = True
        elif not a.startswith("--save="):
            kept.append(a)
    perf.save(
        "gpt_train", quick=args.quick, packages=("torch", "numpy"),
        command=" ".join(["python benchmarks/gpt_train.py", *kept]),
        title="Training the GPT of chapter 6",
        about=(f"Chapter 6's GPT (`attnedu.models.GPT`) trained by the course's loop (`attnedu.train.train`) "
               f"on `python_corpus()`, {n_chars:,} characters of Python source (the last 10% held out for "
               f"validation), in {recipe}: {config.n_layer} layers, {config.n_head} heads, "
               f"{config.d_model} dimensions, context {config.context}, batch {batch_size}, "
               f"{len(history.loss):,} iterations, {n_params:,} parameters. AdamW at learning rate 1e-3, with "
               f"{warmup} warm-up steps and cosine decay to 1e-4. Every {eval_interval} iterations, the loss "
               f"(cross-entropy per character) is the mean over {eval_iters} batches of the training and of "
               "the validation text. The table and figure give that curve; the notes give the speed."),
        settings={"threads": threads, "seed": args.seed, "iterations": len(history.loss),
                  "batch": batch_size, "eval every": eval_interval, "eval batches": eval_iters},
        columns=[("iteration", "iteration", ",d"), ("split", "loss on"), ("loss", "loss", ".4f")],
        rows=rows,
        plot={"kind": "line", "x": "iteration", "y": "loss", "series": "split", "xlabel": "iteration",
              "ylabel": "loss (cross-entropy per character)", "logx": False, "logy": False},
        goals=[], notes=notes,
    )


if __name__ == "__main__":
    main()
