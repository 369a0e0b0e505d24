"""Real pretrained models on the course's own attention code (chapter 7).

``MiniLM`` (all-MiniLM-L6-v2, a 6-layer BERT sentence encoder on :mod:`attnedu.nn`'s blocks)
lives in :mod:`attnedu.pretrained.minilm`; ``SmolLM`` (SmolLM2-135M-Instruct, read from GGUF
into the Llama-style decoder of :mod:`attnedu.llama`) in :mod:`attnedu.pretrained.smollm`.
Their checkpoints' names (Hugging Face's, GGUF's) are translated here, at loading, into the
course's. Both are imported on first use, so
``import attnedu.pretrained`` stays cheap. Where the weights are found:
:mod:`attnedu.pretrained._locate`.
"""

from ._locate import MINILM, SMOLLM2, ModelNotFoundError, locate

__all__ = ["MiniLM", "SmolLM", "ModelNotFoundError", "locate", "MINILM", "SMOLLM2"]


def __getattr__(name):
    if name == "MiniLM":
        from .minilm import MiniLM

        return MiniLM
    if name == "SmolLM":
        from .smollm import SmolLM

        return SmolLM
    raise AttributeError(f"module 'attnedu.pretrained' has no attribute {name!r}")
