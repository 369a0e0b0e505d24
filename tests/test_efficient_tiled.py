"""Tiled attention (chapter 9): the online softmax merges blocks exactly, tiled attention equals
softmax attention without ever holding the (T, T) scores, and its memory stays small where the
explicit path's grows as T^2, measured one call per fresh child process."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnedu.efficient import (ATTENTION_KERNELS, cpu_sdpa_backends, fit_exponent, flash_attention,
                               online_softmax_merge, partial_attention, peak_memory, plain_attention, projected_bytes,
                               tile_counts, tiled_attention, time_call)
from attnedu.functional import causal_mask, scaled_dot_product_attention, softmax

MiB = 2**20


def _rng(seed=0):
    return np.random.default_rng(seed)


def _parents() -> dict[int, int]:
    """Every process's parent (Linux's /proc): pid -> parent pid."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return parent


def _is_fork_server(pid: int) -> bool:
    try:
        return b"from attnedu.efficient.measure import _serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _children() -> set[int]:
    """The measuring children of this process still alive: its own children, and those of the
    fork server that peak_memory starts once (the server stays until this process ends, and is
    not counted)."""
    parent = _parents()
    mine = {pid for pid, ppid in parent.items() if ppid == os.getpid()}
    servers = {pid for pid in mine if _is_fork_server(pid)}
    return (mine - servers) | {pid for pid, ppid in parent.items() if ppid in servers}


# ----------------------------------------------------------------- the online softmax
def test_merging_two_blocks_equals_one_block_over_their_union():
    r = _rng()
    q, k, v = r.normal(size=(6, 4)), r.normal(size=(11, 4)), r.normal(size=(11, 3))
    merged = online_softmax_merge(*partial_attention(q, k[:5], v[:5]), *partial_attention(q, k[5:], v[5:]))
    for got, want in zip(merged, partial_attention(q, k, v)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    m, l, o = merged
    weights = softmax(q @ k.T / 2.0)  # sqrt(d) = 2
    np.testing.assert_allclose(o / l[:, None], weights @ v, rtol=1e-12, atol=1e-12)


def test_a_fully_masked_block_adds_nothing_and_gives_no_nan():
    r = _rng(1)
    q, k, v = r.normal(size=(4, 4)), r.normal(size=(6, 4)), r.normal(size=(6, 2))
    hidden = partial_attention(q, k[3:], v[3:], mask=np.zeros((4, 3), dtype=bool))
    m, l, o = hidden
    assert np.all(np.isneginf(m)) and np.all(l == 0) and np.all(o == 0)
    seen = partial_attention(q, k[:3], v[:3])
    for merged in (online_softmax_merge(*seen, *hidden), online_softmax_merge(*hidden, *seen)):
        for got, want in zip(merged, seen):
            np.testing.assert_array_equal(got, want)
    m, l, o = online_softmax_merge(*hidden, *hidden)  # nothing seen at all: still no NaN
    assert np.all(np.isneginf(m)) and np.all(l == 0) and np.all(o == 0)


def test_a_partly_masked_row_merges_like_the_masked_softmax():
    r = _rng(2)
    q, k, v = r.normal(size=(5, 4)), r.normal(size=(8, 4)), r.normal(size=(8, 3))
    mask = r.random((5, 8)) < 0.5
    mask[:, 0] = True
    mask[1, 4:] = False  # row 1 sees nothing in the second block
    m, l, o = online_softmax_merge(*partial_attention(q, k[:4], v[:4], mask[:, :4]),
                                   *partial_attention(q, k[4:], v[4:], mask[:, 4:]))
    np.testing.assert_allclose(o / l[:, None], scaled_dot_product_attention(q, k, v, mask=mask)[0], atol=1e-12)


# ------------------------------------------------------------------ tiled, in NumPy
@pytest.mark.parametrize("tile", [1, 5, 7, 32, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_tiled_attention_equals_softmax_attention(tile, causal):
    r = _rng(tile)
    T = 23  # no tile but 1 divides it
    q, k, v = r.normal(size=(T, 8)), r.normal(size=(T, 8)), r.normal(size=(T, 5))
    want = scaled_dot_product_attention(q, k, v, mask=causal_mask(T) if causal else None)[0]
    np.testing.assert_allclose(tiled_attention(q, k, v, tile=tile, causal=causal), want, atol=1e-12)


def test_tiled_attention_with_more_keys_than_queries():
    r = _rng(3)
    q, k, v = r.normal(size=(9, 8)), r.normal(size=(40, 8)), r.normal(size=(40, 3))
    np.testing.assert_allclose(tiled_attention(q, k, v, tile=6), scaled_dot_product_attention(q, k, v)[0], atol=1e-12)


# ----------------------------------------------------------------- flash, in PyTorch
SHAPES = [  # (B, H, T, S, d, dv, tile)
    (1, 1, 1, 1, 8, 8, 128),
    (2, 3, 300, 300, 16, 16, 128),  # T not a multiple of the tile
    (1, 2, 129, 129, 64, 64, 128),  # one row past a tile
    (2, 1, 64, 64, 32, 32, 16),  # the tile divides T
    (1, 4, 100, 100, 8, 24, 7),  # dv != d
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("B,H,T,S,d,dv,tile", SHAPES)
def test_flash_attention_equals_torch_sdpa_within_1e_5(B, H, T, S, d, dv, tile, causal):
    g = torch.Generator().manual_seed(T + tile)
    q = torch.randn(B, H, T, d, generator=g)
    k, v = torch.randn(B, H, S, d, generator=g), torch.randn(B, H, S, dv, generator=g)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(flash_attention(q, k, v, causal=causal, tile=tile), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain_attention(q, k, v, causal=causal), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T,S", [(50, 333), (333, 50), (1, 200)])
def test_flash_attention_cross_attention_with_s_not_t(T, S):
    g = torch.Generator().manual_seed(S)
    q = torch.randn(2, 2, T, 16, generator=g)
    k, v = torch.randn(2, 2, S, 16, generator=g), torch.randn(2, 2, S, 16, generator=g)
    torch.testing.assert_close(flash_attention(q, k, v, tile=64), F.scaled_dot_product_attention(q, k, v),
                               atol=1e-5, rtol=1e-5)


def test_causal_flash_never_touches_key_tiles_above_the_diagonal():
    # Poison every key and value after the first tile. The first tile of queries sees none of them,
    # so its rows come out right only if their tiles were skipped, not computed and masked.
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 96, 8, generator=g) for _ in range(3))
    k_bad, v_bad = k.clone(), v.clone()
    k_bad[:, :, 32:], v_bad[:, :, 32:] = float("nan"), float("nan")
    out = flash_attention(q, k_bad, v_bad, causal=True, tile=32)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out[:, :, :32], want[:, :, :32], atol=1e-5, rtol=1e-5)
    assert torch.isnan(flash_attention(q, k_bad, v_bad, causal=False, tile=32)[:, :, :32]).all()


def test_tile_counts_causal_computes_about_half():
    assert tile_counts(8192, 128, causal=False) == (4096, 4096)
    assert tile_counts(8192, 128, causal=True) == (64 * 65 // 2, 4096)
    assert tile_counts(300, 128, causal=True) == (6, 9)  # 3 tiles, the last one partial
    assert tile_counts(1, 128, causal=True) == (1, 1)
    computed, total = tile_counts(65536, 128, causal=True)
    assert 0.5 < computed / total < 0.502


# ---------------------------------------------------------------------- validation
def test_wrong_inputs_are_named_in_the_error():
    q = torch.randn(1, 1, 8, 4)
    with pytest.raises(ValueError, match=r"\(B, H, T, d\)"):
        flash_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="T == S"):
        flash_attention(q, torch.randn(1, 1, 9, 4), torch.randn(1, 1, 9, 4), causal=True)
    with pytest.raises(ValueError, match=r"k \(1, 1, 8, 3\)"):
        flash_attention(q, torch.randn(1, 1, 8, 3), q)
    with pytest.raises(ValueError, match="tile"):
        flash_attention(q, q, q, tile=0)
    with pytest.raises(ValueError, match="causal"):
        flash_attention(q, q, q, causal="yes")
    with pytest.raises(ValueError, match="T == S"):
        plain_attention(q, torch.randn(1, 1, 9, 4), torch.randn(1, 1, 9, 4), causal=True)
    a = np.zeros((3, 4))
    with pytest.raises(ValueError, match="as many queries as keys"):
        tiled_attention(a, np.zeros((5, 4)), np.zeros((5, 2)), causal=True)
    with pytest.raises(ValueError, match="o2 \\(2, 2\\)"):
        online_softmax_merge(np.zeros(3), np.zeros(3), np.zeros((3, 2)), np.zeros(3), np.zeros(3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="mask"):
        partial_attention(a, a, a, mask=np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="unknown kernel 'fast'"):
        peak_memory("fast", T=16)
    with pytest.raises(ValueError, match="S == T"):
        peak_memory("flash", T=16, S=8, causal=True)
    with pytest.raises(ValueError, match="positive"):
        fit_exponent([1, 2], [1, 0])


# ------------------------------------------------------------------ measuring
def test_fit_exponent_projected_bytes_and_time_call():
    T = np.array([512, 1024, 2048, 4096])
    assert fit_exponent(T, 3e-9 * T**2.0) == pytest.approx(2.0)
    assert fit_exponent(T, 5 * T) == pytest.approx(1.0)
    assert projected_bytes(8192) == 256 * MiB
    assert projected_bytes(1024, B=2, H=12, dtype_bytes=2) == 2 * 12 * 1024 * 1024 * 2
    calls = []
    seconds = time_call(lambda x: calls.append(x), 1, repeats=3)
    assert len(calls) == 4 and 0 <= seconds < 1  # one warm-up, then three timed


def test_math_and_flash_sdpa_backends_run_on_the_cpu():
    backends = cpu_sdpa_backends()
    assert backends["MATH"] and backends["FLASH_ATTENTION"]
    assert {"plain", "flash", "sdpa_math", "sdpa_flash"} <= set(ATTENTION_KERNELS)


@pytest.fixture(scope="module")
def at_8192():
    """One plain and one flash call at T = 8192 (B=1, H=1, d=64, float32), each in a fresh child."""
    before = _children()
    results = {kernel: peak_memory(kernel, T=8192, d=64) for kernel in ("plain", "flash")}
    assert _children() <= before, "a child process was left behind"
    return results


def test_flash_extra_peak_memory_is_at_most_a_tenth_of_plain_at_8192(at_8192):
    plain, flash = at_8192["plain"], at_8192["flash"]
    assert plain["status"] == flash["status"] == "ok"
    assert plain["peak_bytes"] >= projected_bytes(8192)  # the (T, T) scores really were held: 256 MiB
    assert flash["peak_bytes"] <= 0.10 * plain["peak_bytes"], (flash["peak_bytes"], plain["peak_bytes"])
    assert flash["peak_bytes"] < 16 * MiB  # the output (2 MiB) and a few (128, 128) tiles
    assert 0 < flash["seconds"] < 60 and 0 < plain["seconds"] < 60  # sanity only


def test_the_memory_cap_kills_a_child_that_allocates_too_much():
    before = _children()
    result = peak_memory("plain", T=16384, max_bytes=512 * MiB, timeout_s=60)  # would need 2 GiB of scores
    assert result["status"] == "over the cap" and result["peak_bytes"] is None
    assert result["rss_at_kill"] > 512 * MiB
    assert _children() <= before


def test_the_timeout_kills_a_slow_child():
    before = _children()
    # seven calls at T = 8192 (warm-up aside: the measured one, a warm-up and five timed), each
    # at least 0.2 s on any CPU
    result = peak_memory("flash", T=8192, repeats=5, timeout_s=0.5)
    assert result["status"] == "timeout" and result["peak_bytes"] is None
    assert 0.5 <= result["wall_seconds"] < 5
    assert _children() <= before


def test_an_interrupted_measurement_leaves_no_child_and_the_next_one_works():
    """Ctrl-C (or Jupyter's stop button) during a measurement: the child and its server go, and
    the next measurement starts a new server and gets its own answer, not the old one's."""
    import signal
    import threading

    from attnedu.efficient import measure

    peak_memory("flash", T=64)  # the server is running
    before, old_server = _children(), measure._server.process.pid
    timer = threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            peak_memory("flash", T=8192, repeats=20)  # seconds of work: interrupted
    finally:
        timer.cancel()
    assert _children() <= before, "the interrupted child was left running"
    assert not Path(f"/proc/{old_server}").exists(), "the old server was left running"
    result = peak_memory("plain", T=1024)
    assert result["status"] == "ok" and (result["kernel"], result["T"]) == ("plain", 1024)
    assert result["peak_bytes"] >= projected_bytes(1024)


def test_each_call_is_measured_in_a_fresh_child():
    """A process that has held the (T, T) scores once would find the second call's memory already
    there (the allocator keeps it): each call gets its own child, so both see the whole peak."""
    first, second = (peak_memory("plain", T=2048) for _ in range(2))
    assert first["status"] == second["status"] == "ok"
    assert min(first["peak_bytes"], second["peak_bytes"]) >= projected_bytes(2048)  # 16 MiB of scores, twice
