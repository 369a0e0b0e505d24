r"""Training a language model: batches, the learning-rate schedule, the loop (chapter 6).

* :func:`get_batch`: random windows of a token sequence, and the same windows shifted by one;
* :func:`get_lr`: linear warm-up, then cosine decay to a floor (nanoGPT's schedule);
* :func:`estimate_loss`: the mean loss over a fixed set of batches, without dropout;
* :func:`train`: AdamW, the schedule, gradient clipping, evaluations, a progress bar, and a
  :class:`History` of the losses. Seeded: the same seed gives the same losses.

The environment variable ``ATTNEDU_MAX_TRAIN_SECONDS`` caps every :func:`train` call's
``max_seconds`` (autograders set it, so that a notebook that trains runs in seconds).

.. math::
    \mathcal{L} = -\frac{1}{BT} \sum_{b,t} \log p_\theta(x_{b,t+1} \mid x_{b,\le t})
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["get_batch", "get_lr", "estimate_loss", "History", "ProgressBar", "train", "MAX_SECONDS_ENV"]

#: The environment variable that caps :func:`train`'s ``max_seconds`` (seconds, a number >= 0).
MAX_SECONDS_ENV = "ATTNEDU_MAX_TRAIN_SECONDS"


def _as_ids(ids, name: str) -> Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D sequence of integer token ids, got shape {tuple(ids.shape)} "
                         f"and dtype {ids.dtype}")
    return ids.long()


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def get_batch(ids, batch_size: int, block_size: int,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``batch_size`` random windows of ``block_size`` tokens, and the tokens that follow each.

    Row ``b`` is ``x[b] = ids[i_b : i_b + block_size]`` and ``y[b] = ids[i_b + 1 : i_b + block_size + 1]``
    for a random offset ``i_b`` drawn uniformly from ``[0, N - block_size)``: ``y[b, t]`` is the
    token to predict after reading ``x[b, :t+1]``.

    Args:
        ids: ``(N,)`` token ids, ``N > block_size``.
        batch_size, block_size: ``B`` and ``T``.
        generator: a seeded ``torch.Generator`` for reproducible batches.

    Returns:
        ``(x, y)``, two ``(B, T)`` ``torch.long`` tensors.
    """
    ids = _as_ids(ids, "ids")
    _positive_int(batch_size, "batch_size")
    _positive_int(block_size, "block_size")
    if len(ids) <= block_size:
        raise ValueError(f"ids has {len(ids)} tokens; a window of block_size={block_size} plus the "
                         "token after it needs at least block_size + 1")
    offsets = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)  # (B,)
    rows = offsets[:, None] + torch.arange(block_size)  # (B, T) positions in ids
    return ids[rows], ids[rows + 1]  # (B, T), (B, T)


def get_lr(it: int, *, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    r"""The learning rate at iteration ``it`` (0-based), nanoGPT's schedule.

    * warm-up, ``it < warmup``: linear, ``lr (it + 1) / (warmup + 1)``;
    * then cosine decay from ``lr`` (at ``it = warmup``) to ``min_lr`` (at ``it = decay_iters``):
      ``min_lr + (lr - min_lr) (1 + cos(pi r)) / 2``, ``r = (it - warmup) / (decay_iters - warmup)``;
    * after ``decay_iters``: ``min_lr``, the floor.
    """
    if isinstance(it, bool) or not isinstance(it, int) or it < 0:
        raise ValueError(f"it must be an integer >= 0, got {it!r}")
    if not 0 <= min_lr <= lr:
        raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={min_lr!r}, lr={lr!r}")
    if not 0 <= warmup <= decay_iters:
        raise ValueError(f"need 0 <= warmup <= decay_iters, got warmup={warmup!r}, decay_iters={decay_iters!r}")
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it >= decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


@torch.no_grad()
def estimate_loss(model: nn.Module, ids, *, batch_size: int, block_size: int, eval_iters: int,
                  seed: int = 0) -> float:
    """The mean loss of ``model`` over ``eval_iters`` batches of ``ids`` in eval mode (no dropout).

    The batches depend only on ``seed``: evaluations at different points of training see the
    same text, so their losses can be compared without the noise of different batches.
    """
    _positive_int(eval_iters, "eval_iters")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        losses = [model(*get_batch(ids, batch_size, block_size, generator))[1].item() for _ in range(eval_iters)]
    finally:
        model.train(was_training)
    return sum(losses) / len(losses)


@dataclass
class History:
    """What :func:`train` measured.

    Attributes:
        loss: the training loss of every iteration (on its own batch: noisy).
        lr: the learning rate of every iteration.
        iter_time: the seconds each iteration took (evaluations not included).
        eval_iters: the iterations at which the model was evaluated (``0`` is before
            training, the last is ``iters``, after the last step).
        train_loss, val_loss: the losses estimated at those points, on fixed batches.
        wall_time: seconds for the whole run, evaluations included.
        tokens: training tokens processed (``iters * batch_size * block_size``).
    """

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    iter_time: list[float] = field(default_factory=list)
    eval_iters: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        """Training throughput over the iterations' time (evaluations excluded)."""
        t = sum(self.iter_time)
        return self.tokens / t if t > 0 else float("nan")


# ----------------------------------------------------------------------------- progress bar
def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class ProgressBar:
    """A text progress bar with no dependencies, for a terminal or a notebook.

    In a Jupyter notebook it is one output redrawn in place (a display handle: the saved
    notebook keeps only its last state); in a terminal, one line redrawn with ``"\\r"``; when
    the output is a file or a pipe, only the :meth:`log` lines are written (no redrawing).
    """

    def __init__(self, total: int, width: int = 30, file=None, min_interval: float = 0.2):
        self.total, self.width, self.min_interval = total, width, min_interval
        self.file = file if file is not None else sys.stdout
        self.start = time.perf_counter()
        self.lines: list[str] = []
        self._last_draw = -math.inf
        self._bar = ""
        self._handle = None
        self._mode = "notebook" if file is None and _in_notebook() else (
            "terminal" if hasattr(self.file, "isatty") and self.file.isatty() else "log")
        if self._mode == "notebook":
            from IPython.display import display
            self._handle = display({"text/plain": ""}, raw=True, display_id=True)

    def _render(self, n: int, postfix: str) -> str:
        frac = n / self.total if self.total else 1.0
        filled = int(round(self.width * frac))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / n * (self.total - n) if n else 0.0
        return (f"{n:>{len(str(self.total))}}/{self.total} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{100 * frac:3.0f}% {_duration(elapsed)}<{_duration(eta)} {postfix}").rstrip()

    def update(self, n: int, postfix: str = "", force: bool = False) -> None:
        """Show ``n`` of ``total`` done (redrawn at most every ``min_interval`` seconds)."""
        now = time.perf_counter()
        if not force and now - self._last_draw < self.min_interval and n < self.total:
            return
        self._last_draw = now
        self._bar = self._render(n, postfix)
        if self._mode == "notebook":
            self._handle.update({"text/plain": "\n".join(self.lines + [self._bar])}, raw=True)
        elif self._mode == "terminal":
            self.file.write("\r\033[K" + self._bar)
            self.file.flush()

    def log(self, line: str) -> None:
        """A line that stays (an evaluation's result), printed above the bar."""
        self.lines.append(line)
        if self._mode == "notebook":
            self._handle.update({"text/plain": "\n".join(self.lines + [self._bar])}, raw=True)
        elif self._mode == "terminal":
            self.file.write("\r\033[K" + line + "\n" + self._bar)
            self.file.flush()
        else:
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        if self._mode == "terminal":
            self.file.write("\n")
            self.file.flush()


# ----------------------------------------------------------------------------- the loop
def _max_seconds_from_env() -> float | None:
    """The cap set by ``$ATTNEDU_MAX_TRAIN_SECONDS``, or ``None`` when it is unset or empty."""
    text = os.environ.get(MAX_SECONDS_ENV, "").strip()
    if not text:
        return None
    try:
        cap = float(text)
    except ValueError:
        cap = float("nan")
    if not math.isfinite(cap) or cap < 0:
        raise ValueError(f"the environment variable {MAX_SECONDS_ENV}={text!r} must be a number of seconds >= 0")
    return cap


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the matrices (linear weights, embeddings) only, not on biases and
    LayerNorm gains: decaying those only pulls them away from their useful values."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(model: nn.Module, train_ids, val_ids, *, iters: int = 2000, batch_size: int = 12,
          block_size: int | None = None, lr: float = 1e-3, warmup: int = 100, min_lr: float = 1e-4,
          weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.99), grad_clip: float | None = 1.0,
          eval_interval: int = 250, eval_iters: int = 20, seed: int = 0, progress: bool = True,
          max_seconds: float | None = None) -> History:
    """Train a language model ``model(x, y) -> (logits, loss)`` on random windows of ``train_ids``.

    Each iteration: a batch from :func:`get_batch`, the loss, its gradient, the gradient
    clipped to norm ``grad_clip``, and one AdamW step at the learning rate :func:`get_lr`
    gives (warm-up over ``warmup`` iterations, cosine decay to ``min_lr`` at ``iters``).
    Every ``eval_interval`` iterations, and after the last, :func:`estimate_loss` measures the
    training and validation losses on ``eval_iters`` fixed batches. The defaults are nanoGPT's
    configuration for a small character model on a CPU.

    Seeded: the batches, and dropout, come from ``seed``, so the same seed, model
    initialisation and data give the same losses (the global random state is left untouched).

    Args:
        model: returns ``(logits, loss)`` given ``(x, y)`` (like :class:`attnedu.models.GPT`).
        train_ids, val_ids: 1-D token ids.
        iters: number of optimisation steps.
        block_size: the window length (default: ``model.config.block_size``).
        grad_clip: clip the gradient's global norm to this (``None``: no clipping).
        progress: show a progress bar and the evaluations.
        max_seconds: stop early after this many seconds (then evaluate once more), to keep a
            notebook within its time budget; the run is then no longer reproducible. At least
            one iteration always runs.

    Environment:
        ``ATTNEDU_MAX_TRAIN_SECONDS``: when set (a number of seconds ``>= 0``), it caps
        ``max_seconds``: the run stops at whichever comes first. An autograder that executes
        a notebook several times sets it (say to 5) so that training takes seconds; nothing
        graded may then depend on how well the model trained. Unset or empty: no cap.

    Returns:
        The :class:`History` of the losses.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if block_size is None:
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "block_size"):
            raise ValueError("block_size is not given and the model has no config.block_size")
        block_size = config.block_size
    for name, value in (("iters", iters), ("batch_size", batch_size), ("block_size", block_size),
                        ("eval_interval", eval_interval), ("eval_iters", eval_iters)):
        _positive_int(value, name)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= iters:
        raise ValueError(f"warmup must be an integer in [0, iters={iters}], got {warmup!r}")
    if not 0 <= min_lr <= lr:
        raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={min_lr!r}, lr={lr!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if grad_clip is not None and grad_clip <= 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not max_seconds >= 0):
        raise ValueError(f"max_seconds must be a number >= 0 or None, got {max_seconds!r}")
    cap = _max_seconds_from_env()
    capped = cap is not None and (max_seconds is None or cap < max_seconds)
    if capped:
        max_seconds = cap
    train_ids, val_ids = _as_ids(train_ids, "train_ids"), _as_ids(val_ids, "val_ids")
    for name, ids in (("train_ids", train_ids), ("val_ids", val_ids)):
        if len(ids) <= block_size:
            raise ValueError(f"{name} has {len(ids)} tokens: too few for block_size={block_size} "
                             "(a window and the token after it)")

    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=betas)
    generator = torch.Generator().manual_seed(seed)  # the training batches
    history = History()
    bar = ProgressBar(iters) if progress else None
    start = time.perf_counter()

    def evaluate(it: int) -> None:
        kw = dict(batch_size=batch_size, block_size=block_size, eval_iters=eval_iters, seed=seed + 1)
        history.eval_iters.append(it)
        history.train_loss.append(estimate_loss(model, train_ids, **kw))
        history.val_loss.append(estimate_loss(model, val_ids, **kw))
        if bar is not None:
            bar.log(f"iter {it:>{len(str(iters))}}: train loss {history.train_loss[-1]:.4f}, "
                    f"val loss {history.val_loss[-1]:.4f}")

    model.train()
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: seed it, then restore it
        torch.manual_seed(seed)
        for it in range(iters):
            if it % eval_interval == 0:
                evaluate(it)
            t0 = time.perf_counter()
            lr_it = get_lr(it, lr=lr, min_lr=min_lr, warmup=warmup, decay_iters=iters)
            for group in optimizer.param_groups:
                group["lr"] = lr_it
            x, y = get_batch(train_ids, batch_size, block_size, generator)  # (B, T), (B, T)
            _, loss = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            history.loss.append(loss.item())
            history.lr.append(lr_it)
            history.iter_time.append(time.perf_counter() - t0)
            history.tokens += batch_size * block_size
            if bar is not None:
                bar.update(it + 1, f"loss {history.loss[-1]:.4f}, lr {lr_it:.2e}")
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                if bar is not None:
                    why = f"${MAX_SECONDS_ENV}={max_seconds:g}" if capped else f"max_seconds={max_seconds:g}"
                    bar.log(f"stopped after {it + 1} iteration{'s' if it else ''}: {why} reached")
                break
        evaluate(len(history.loss))
    history.wall_time = time.perf_counter() - start
    if bar is not None:
        bar.update(len(history.loss), f"loss {history.loss[-1]:.4f}, {history.tokens_per_s:,.0f} tokens/s", force=True)
        bar.close()
    return history
