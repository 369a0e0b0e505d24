r"""Measuring the cost of attention on the reader's machine: time, and the peak memory of one call.

Time is easy: run a function a few times and take the median (:func:`time_call`). How it grows
with the sequence length ``T`` is the slope of :math:`\log t` on :math:`\log T`
(:func:`fit_exponent`): 2 for plain attention, whose work is :math:`O(T^2 d)`.

Peak memory is harder. PyTorch reports no per-call peak on the CPU, and a process's memory,
once grown, is not always given back, so the second of two calls in one process can look free.
:func:`peak_memory` therefore runs *one* call in a *fresh child process*: the child builds its
inputs from a seed (nothing big is pickled), warms the kernel up on a tiny input (so that loading
code is not counted), records its resident memory (RSS) as the baseline, runs the call, and
reports the peak RSS above that baseline.

The children come from a *fork server*: a process started once, at a process's first
measurement, that imports this module (and so torch) and then only forks (``os.fork``: Linux and
macOS; on Windows, WSL 2). Each child is still fresh, a copy of a process that has never run a
kernel, but it starts in milliseconds instead of the 1.5 to 2 s a new Python process spends
importing torch, which was most of a measurement's cost. The server ends when the process that
started it does. Three ways of seeing the peak:

1. ``VmHWM``, the kernel's own high-water mark of the resident set (``/proc/self/status``), which
   the child resets to its current RSS just before the call (writing ``5`` to
   ``/proc/self/clear_refs``, Linux 4.0+). The kernel raises it before it takes any page away,
   so no peak escapes it, short or long.
2. ``ru_maxrss`` from ``resource.getrusage``: the same high-water mark, but since the process
   started, and it cannot be reset. It counts only when the call sets a new record; if the
   process was bigger earlier (importing torch), it sees nothing.
3. A thread that reads the RSS (``/proc/self/statm``, or psutil) every millisecond. Works
   anywhere, but can miss a spike shorter than a millisecond.

Each is a lower bound of the true peak (the kernel counts resident pages per CPU and adds them
up lazily, so any reading can be short by a few hundred KiB), so the child reports the largest;
``by_method`` keeps all three.

The parent watches the child's RSS every 2 ms and kills it if it passes ``max_bytes`` (the
result then says ``"over the cap"``) or runs past ``timeout_s``; the server always reaps it.

The named kernels (:data:`ATTENTION_KERNELS`): ``plain`` and ``flash`` from
:mod:`attnedu.efficient.tiled`, and torch's ``scaled_dot_product_attention`` restricted to one
backend, ``sdpa_math`` (the explicit path) and ``sdpa_flash`` (a tiled kernel);
:func:`cpu_sdpa_backends` says which backends run on this machine's CPU. (With torch 2.13 on
the CPU: MATH and FLASH_ATTENTION run; EFFICIENT_ATTENTION and CUDNN_ATTENTION are GPU-only.)
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._validate import as_float_array, positive_int, positive_number
from .tiled import flash_attention, plain_attention

__all__ = [
    "ATTENTION_KERNELS",
    "peak_memory",
    "cpu_sdpa_backends",
    "time_call",
    "fit_exponent",
    "projected_bytes",
    "crossover_length",
    "GiB",
    "MiB",
]

MiB, GiB = 2**20, 2**30


def _sdpa(backend: SDPBackend):
    def run(q, k, v, causal, tile):  # tile: unused, torch picks its own
        with sdpa_kernel([backend]):  # only this backend may run: an error if it cannot
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return run


#: name -> ``fn(q, k, v, causal, tile)`` returning ``(B, H, T, dv)``; the kernels :func:`peak_memory` runs.
ATTENTION_KERNELS = {
    "plain": lambda q, k, v, causal, tile: plain_attention(q, k, v, causal=causal),
    "flash": lambda q, k, v, causal, tile: flash_attention(q, k, v, causal=causal, tile=tile),
    "sdpa_math": _sdpa(SDPBackend.MATH),
    "sdpa_flash": _sdpa(SDPBackend.FLASH_ATTENTION),
}

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ------------------------------------------------------------------- resident memory
def _rss(pid: int | None = None) -> int:
    """Resident bytes of process ``pid`` (this one by default); 0 once it is gone."""
    if Path("/proc/self/statm").exists():  # Linux: the second field of statm is the resident pages
        try:
            return int(Path(f"/proc/{pid or 'self'}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0
    try:
        import psutil
    except ImportError:
        raise RuntimeError("measuring memory needs Linux's /proc or psutil (pip install psutil)") from None
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _reset_high_water_mark() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux 4.0+); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _high_water_mark() -> int:
    """``VmHWM``: the largest RSS of this process since its start or the last reset, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _maxrss() -> int:
    """``ru_maxrss`` in bytes (Linux reports kB, macOS bytes)."""
    import resource  # POSIX only: imported here so that attnedu.efficient imports everywhere

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _Sampler(threading.Thread):
    """Reads this process's RSS every ``interval`` seconds until stopped; ``peak`` is the largest seen."""

    def __init__(self, interval: float = 0.001):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, _rss(), threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _rss())
        return self.peak


# ------------------------------------------------------------------------ the child
def _inputs(spec: dict, T: int, S: int):
    g = torch.Generator().manual_seed(spec["seed"])
    dtype = _DTYPES[spec["dtype"]]
    B, H, d = spec["B"], spec["H"], spec["d"]
    return (torch.randn(B, H, T, d, generator=g, dtype=dtype),  # q (B, H, T, d)
            torch.randn(B, H, S, d, generator=g, dtype=dtype),  # k (B, H, S, d)
            torch.randn(B, H, S, d, generator=g, dtype=dtype))  # v (B, H, S, d)


def _child(spec: dict) -> dict:
    """Run inside the fresh process: one measured call of ``spec["kernel"]``, then ``repeats`` timed ones."""
    torch.set_num_threads(spec["threads"])
    fn, causal, tile = ATTENTION_KERNELS[spec["kernel"]], spec["causal"], spec["tile"]
    with torch.inference_mode():
        small = min(spec["T"], 64)
        fn(*_inputs(spec, small, small if causal else min(spec["S"], 64)), causal, tile)  # warm-up: load code
        q, k, v = _inputs(spec, spec["T"], spec["S"])
        gc.collect()
        baseline, maxrss_before = _rss(), _maxrss()
        hwm_ok = _reset_high_water_mark()
        sampler = _Sampler()
        sampler.start()
        start = time.perf_counter()
        out = fn(q, k, v, causal, tile)  # (B, H, T, d): the call measured
        seconds = time.perf_counter() - start
        sampled = sampler.stop()
        seen = {"sampled": sampled}
        if hwm_ok:
            seen["VmHWM"] = _high_water_mark()
        if _maxrss() > maxrss_before:  # a new record for the whole process: the call's own peak
            seen["ru_maxrss"] = _maxrss()
        del out
        times = [time_call(fn, q, k, v, causal, tile, repeats=spec["repeats"])] if spec["repeats"] else []
    return {"peak_bytes": max(0, max(seen.values()) - baseline), "seconds": seconds, "baseline_bytes": baseline,
            "by_method": {name: max(0, b - baseline) for name, b in seen.items()},
            "median_seconds": times[0] if times else None}


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _serve() -> None:
    """The fork server's loop (its own process; this module, and torch, already imported).

    For each spec read from stdin (one JSON line), fork a child that runs :func:`_child` and
    writes its answer (``{"ok": result}`` or ``{"error": traceback}``) to a pipe of its own; say
    ``{"pid": ...}`` on stdout at once, so the parent can watch it, then, once it has ended and
    been reaped, ``{"exit": code, "answer": ...}`` (``answer`` null if it was killed first).
    The server ends at the end of stdin: when the parent closes it, or dies."""
    for line in sys.stdin:
        spec = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: answer down the pipe, then leave, never back into this loop
            code = 0
            try:
                os.close(read_end)
                try:
                    answer = {"ok": _child(spec)}
                except BaseException:  # noqa: BLE001 (the parent quotes it)
                    answer = {"error": traceback.format_exc()[-2000:]}
                _write_all(write_end, json.dumps(answer).encode())
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        print(json.dumps({"pid": pid}), flush=True)
        chunks = []
        while chunk := os.read(read_end, 1 << 16):  # until the child's end closes: done or killed
            chunks.append(chunk)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        answer = json.loads(b"".join(chunks)) if chunks else None
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "answer": answer}), flush=True)


class _ForkServer:
    """The parent's handle on the fork server: starts it, sends it specs, reads its lines."""

    def __init__(self):
        if not hasattr(os, "fork"):
            raise RuntimeError("peak_memory needs os.fork, which Linux and macOS have and Windows does not: "
                               "on Windows, run the course in WSL 2")
        root = str(Path(__file__).resolve().parents[2])  # attnedu's folder: the server imports it from there
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self.errors = tempfile.TemporaryFile()  # the server's stderr, quoted if it dies
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from attnedu.efficient.measure import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, env=env, start_new_session=True)
        self.buffer = b""

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, spec: dict) -> None:
        self.process.stdin.write(json.dumps(spec).encode() + b"\n")
        self.process.stdin.flush()

    def line(self, timeout: float) -> dict | None:
        """The server's next line, or None if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            if not chunk:
                self.process.wait()
                self.errors.seek(0)
                tail = self.errors.read().decode(errors="replace").strip()[-2000:]
                raise RuntimeError(f"the measuring server ended (exit code {self.process.returncode}): {tail}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        try:
            self.process.stdin.close()  # the end of its input: it leaves its loop
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.errors.close()


_server: _ForkServer | None = None
_lock = threading.Lock()


def _kill(pid: int | None) -> None:
    """SIGKILL a measuring child (it has no children of its own, only threads), if it still runs."""
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it had just ended
            pass


def _fork_server() -> _ForkServer:
    """This process's fork server, started at the first call (and again if it has died)."""
    global _server
    if _server is None or not _server.alive():
        _server = _ForkServer()
    return _server


def _close_fork_server(kill: bool = False) -> None:
    global _server
    if _server is not None:
        if kill:
            _server.process.kill()
        _server.close()
        _server = None


atexit.register(_close_fork_server)  # (it ends at the end of its input anyway; this waits for it)


def peak_memory(kernel: str, *, T: int, S: int | None = None, B: int = 1, H: int = 1, d: int = 64,
                causal: bool = False, tile: int = 128, seed: int = 0, dtype: str = "float32", threads: int = 1,
                repeats: int = 0, max_bytes: int = 2 * GiB, timeout_s: float = 120.0) -> dict:
    """Peak memory and time of ONE call of a named kernel, run in a fresh child process.

    The child builds ``q (B, H, T, d)``, ``k, v (B, H, S, d)`` from ``seed`` and runs
    ``ATTENTION_KERNELS[kernel]`` once on them (see the module docstring for how the peak is read).

    Args:
        kernel: a name in :data:`ATTENTION_KERNELS`: ``"plain"``, ``"flash"``, ``"sdpa_math"``, ``"sdpa_flash"``.
        T, S: queries and keys (``S`` defaults to ``T``; ``causal`` needs ``S == T``); B, H, d: batch, heads, size.
        tile: the tile of ``flash`` (the others ignore it).
        threads: torch threads in the child (1: the same on every machine).
        repeats: if > 0, the child also times that many further calls after a warm-up (``median_seconds``).
        max_bytes: the child is killed as soon as its whole RSS passes this (default 2 GiB).
        timeout_s: ... or once it has run this long.

    Returns:
        A dict: ``status`` (``"ok"``, ``"over the cap"`` or ``"timeout"``); ``peak_bytes`` (the peak RSS
        above the child's baseline, taken after the inputs were built; ``None`` unless ok); ``seconds``
        (the measured call); ``median_seconds`` (``None`` unless ``repeats``); ``baseline_bytes``;
        ``by_method`` (the extra peak as ``VmHWM``, ``ru_maxrss`` and the 1 ms sampler each saw it,
        where they could); ``wall_seconds`` (the whole child); and the arguments.

    Raises:
        ValueError: an unknown kernel or a bad size. RuntimeError: the child failed (its error is quoted).
    """
    if kernel not in ATTENTION_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(ATTENTION_KERNELS)}")
    T, B, H, d, tile, threads = (positive_int(x, n) for x, n in
                                 ((T, "T"), (B, "B"), (H, "H"), (d, "d"), (tile, "tile"), (threads, "threads")))
    S = T if S is None else positive_int(S, "S")
    if causal and S != T:
        raise ValueError(f"causal attention needs S == T, got T={T} and S={S}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise ValueError(f"repeats must be an integer >= 0, got {repeats!r}")
    max_bytes, timeout_s = positive_int(max_bytes, "max_bytes"), positive_number(timeout_s, "timeout_s")
    spec = dict(kernel=kernel, T=T, S=S, B=B, H=H, d=d, causal=bool(causal), tile=tile, seed=seed, dtype=dtype,
                threads=threads, repeats=repeats)
    _rss()  # fails here, in the parent, on a machine where memory cannot be read
    result = dict(spec, status="ok", peak_bytes=None, seconds=None, median_seconds=None, max_bytes=max_bytes)
    with _lock:  # one measurement at a time per process: the server answers in order
        server, pid = _fork_server(), None  # the first call of a process starts it: an import of torch
        try:
            server.send(spec)
            forked = server.line(timeout=60)
            if forked is None:
                raise RuntimeError("the measuring server did not fork a child within 60 s")
            pid, start = forked["pid"], time.monotonic()
            while (done := server.line(timeout=0.002)) is None:  # the child runs: watch it
                rss = _rss(pid)
                if rss > max_bytes:
                    result.update(status="over the cap", rss_at_kill=rss)
                elif time.monotonic() - start > timeout_s:
                    result.update(status="timeout")
                if result["status"] != "ok":
                    _kill(pid)  # the server reaps it, then says so
                    done = server.line(timeout=60)
                    break
        except BaseException:  # an interrupt (Ctrl-C, Jupyter's stop button) or a broken server:
            _kill(pid)  # the child and the server both go, and the next call starts a new server
            _close_fork_server(kill=True)
            raise
    result["wall_seconds"] = time.monotonic() - start
    if done is None:
        raise RuntimeError(f"the measuring server did not report the end of its child {pid} within 60 s")
    if result["status"] != "ok":
        return result
    answer = done["answer"] or {"error": f"it ended without an answer (exit code {done['exit']})"}
    if "error" in answer:
        raise RuntimeError(f"the child measuring {kernel!r} at T={T} failed: {answer['error']}")
    result.update(answer["ok"])
    return result


def cpu_sdpa_backends() -> dict[str, bool]:
    """Which ``torch.nn.attention.SDPBackend`` can run ``scaled_dot_product_attention`` on this CPU
    (float32, causal and not): ``{"MATH": True, "FLASH_ATTENTION": True, ...}``."""
    q = torch.randn(1, 1, 16, 8)
    runs = {}
    for name in ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        try:
            with sdpa_kernel([getattr(SDPBackend, name)]):
                F.scaled_dot_product_attention(q, q, q)
                F.scaled_dot_product_attention(q, q, q, is_causal=True)
            runs[name] = True
        except (RuntimeError, AttributeError):
            runs[name] = False
    return runs


# ------------------------------------------------------------------ time and growth
def time_call(fn, *args, repeats: int = 3, **kwargs) -> float:
    """Median wall-clock seconds of ``fn(*args, **kwargs)`` over ``repeats`` calls, after one warm-up call."""
    repeats = positive_int(repeats, "repeats")
    fn(*args, **kwargs)  # warm-up: first-call costs (loading, caches) are not what we measure
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_exponent(T, y) -> float:
    r"""The exponent ``p`` of ``y ~ c T^p``: the least-squares slope of :math:`\log y` on :math:`\log T`.

    T, y: ``(n,)`` positive numbers, ``n >= 2``, at least two different ``T``.
    """
    T = as_float_array(T, "T", min_ndim=1, max_ndim=1)
    y = as_float_array(y, "y", min_ndim=1, max_ndim=1)
    if T.shape != y.shape or T.shape[0] < 2 or np.unique(T).size < 2:
        raise ValueError(f"need T and y of the same shape (n,), n >= 2, with two different T; "
                         f"got T {T.shape} and y {y.shape}")
    if not (np.all(T > 0) and np.all(y > 0) and np.all(np.isfinite(y))):
        raise ValueError(f"T and y must be positive and finite to take logs; got T={T.tolist()}, y={y.tolist()}")
    return float(np.polyfit(np.log(T), np.log(y), 1)[0])


def projected_bytes(T: int, B: int = 1, H: int = 1, dtype_bytes: int = 4) -> int:
    """Bytes of the ``(B, H, T, T)`` score matrix: what the explicit path needs at least, ``B H T^2 dtype_bytes``."""
    T, B, H, dtype_bytes = (positive_int(x, n) for x, n in ((T, "T"), (B, "B"), (H, "H"), (dtype_bytes, "dtype_bytes")))
    return B * H * T * T * dtype_bytes


def crossover_length(Ts, cost_a, cost_b):
    """The shortest length from which ``a`` costs more than ``b`` for good: the smallest ``T`` in ``Ts``
    such that ``cost_a > cost_b`` at that ``T`` and at every longer ``T`` measured; ``None`` if
    ``a`` is not dearer at the longest ``T``.

    Ts: ``(n,)`` lengths, in any order (each at most once); cost_a, cost_b: ``(n,)`` costs (seconds,
    bytes, FLOPs) measured at those lengths. "For good": timings are noisy near the crossover, and a
    single lucky measurement below it must not count as the crossover. A tie is not "more".

    >>> crossover_length([64, 128, 256, 512], [1.0, 3.0, 2.0, 9.0], [2.0, 2.0, 2.5, 4.0])
    512
    """
    Ts = as_float_array(Ts, "Ts", min_ndim=1, max_ndim=1)
    a = as_float_array(cost_a, "cost_a", min_ndim=1, max_ndim=1)
    b = as_float_array(cost_b, "cost_b", min_ndim=1, max_ndim=1)
    if not (Ts.shape == a.shape == b.shape) or Ts.shape[0] < 1 or np.unique(Ts).size < Ts.size:
        raise ValueError(f"need Ts, cost_a and cost_b of the same shape (n,), n >= 1, each T once; "
                         f"got {Ts.shape}, {a.shape} and {b.shape}")
    order = np.argsort(Ts)
    Ts, dearer = Ts[order], (a > b)[order]
    found = None
    for i in range(len(Ts) - 1, -1, -1):  # from the longest T down, while a stays dearer
        if not dearer[i]:
            break
        found = Ts[i]
    return None if found is None else int(found) if float(found).is_integer() else float(found)
