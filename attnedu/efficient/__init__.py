"""Chapter 9, the cost of attention: what attention costs, and the tricks that tame it.

One concept per module:

* ``kv_cache``: the KV cache's bytes (``kv_cache_bytes``, ``measured_cache_bytes`` on SmolLM2),
  and grouped-query attention without training (``group_kv_heads``, ``grouped_losses``);
* ``window``: sliding-window attention, the rolling KV cache, the receptive field of stacked windows;
* ``linear``: linear attention (``elu + 1`` features), its error and its crossover length;
* ``tiled``: FlashAttention's idea, attention by tiles with the online softmax, never holding the
  ``(T, T)`` scores (``partial_attention``, ``online_softmax_merge``, ``tiled_attention`` in NumPy;
  ``flash_attention``, ``plain_attention``, ``tile_counts`` in PyTorch);
* ``measure``: the time and peak memory of one call, each in a fresh child process
  (``peak_memory``, ``time_call``, ``fit_exponent``, ``projected_bytes``, ``cpu_sdpa_backends``).
"""

from .kv_cache import (group_kv_heads, grouped_cache_bytes, grouped_losses, kv_cache_bytes,
                       measured_cache_bytes, validation_ids)
from .linear import (approximation_error, crossover, feature_map, linear_attention, linear_attention_quadratic,
                     softmax_attention)
from .measure import (ATTENTION_KERNELS, cpu_sdpa_backends, crossover_length, fit_exponent, peak_memory, projected_bytes,
                      time_call)
from .tiled import (flash_attention, online_softmax_merge, partial_attention, plain_attention, tile_counts,
                    tiled_attention)
from .window import (RollingKVCache, cache_bytes_by_length, chapter3_passage, perturbation_reach, receptive_field,
                     rolling_buffer_attention, rolling_window_attention, sliding_window_attention, sliding_window_mask,
                     window_attention_step)

__all__ = [
    # kv_cache
    "kv_cache_bytes", "measured_cache_bytes", "group_kv_heads", "grouped_losses", "grouped_cache_bytes",
    "validation_ids",
    # window
    "sliding_window_mask", "sliding_window_attention", "RollingKVCache", "window_attention_step",
    "rolling_window_attention", "rolling_buffer_attention", "cache_bytes_by_length", "receptive_field", "chapter3_passage",
    "perturbation_reach",
    # linear
    "feature_map", "linear_attention", "linear_attention_quadratic", "softmax_attention",
    "approximation_error", "crossover",
    # tiled
    "partial_attention", "online_softmax_merge", "tiled_attention", "flash_attention", "plain_attention",
    "tile_counts",
    # measure
    "ATTENTION_KERNELS", "peak_memory", "cpu_sdpa_backends", "time_call", "fit_exponent", "projected_bytes",
    "crossover_length",
]
