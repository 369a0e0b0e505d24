r"""Reading a GGUF file: hyper-parameters, tokenizer and (dequantised) weights (chapter 7).

GGUF is llama.cpp's single-file format: a header of key/value *metadata* (the architecture's
hyper-parameters, the tokenizer's vocabulary, merges and chat template) followed by the
tensors, most of them *quantised* -- stored in blocks of 32 numbers that share a scale (and,
for ``Q4_1``, an offset), each number in 4 bits. :class:`GGUFFile` reads the header and finds
each tensor's bytes; :func:`dequantize` turns every tensor back into float32: the two block
formats SmolLM2 uses (``Q4_1``, ``Q8_0``) written out here, every other one by the ``gguf``
library's ``gguf.quants.dequantize``. (``gguf.GGUFReader`` reads the same file, as chapter 7
shows; it makes a NumPy view of every one of the vocabulary's 49,152 tokens and 48,900 merges,
which takes about 4 s on the course's machine, where :class:`GGUFFile` takes a tenth of a
second. ``gguf.quants.dequantize`` gives the same numbers, bit for bit, but took 0.91 s for
SmolLM2's 211 quantised tensors, where :func:`dequantize` takes 0.19 s.)

Three things to know when loading a Llama-style GGUF into PyTorch modules:

1. **Names.** GGUF calls the query projection of layer 3 ``blk.3.attn_q.weight``; our model
   calls it ``blocks.3.attn.q_proj.weight``. :data:`LLAMA_TENSOR_NAMES` is the table, and
   :func:`attnedu_name` applies it.
2. **Shapes.** GGUF lists a tensor's dimensions fastest-varying first (``[576, 49152]`` for the
   embedding); the array ``gguf`` returns, like PyTorch's ``nn.Linear.weight``, is
   ``(out_features, in_features)`` = ``(49152, 576)``. No transpose is needed.
3. **The rotary layout.** llama.cpp's converter reorders the rows of ``W_q`` and ``W_k``
   inside each head (:func:`permute_qk`) so that rotary pairs are *adjacent* features
   ``(2i, 2i+1)``. We keep the file's order and rotate adjacent pairs, exactly as chapter 3's
   :func:`attnedu.functional.apply_rope` does; ``transformers`` instead undoes the reordering
   (:func:`unpermute_qk`) and rotates the halves ``(i, i + d/2)``. Both give the same
   attention (see :mod:`attnedu.rope`).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "GGUFFile", "GGUFTensor", "LLAMA_TENSOR_NAMES", "attnedu_name", "read_metadata", "read_tensors", "llama_hparams",
    "build_tokenizer", "permute_qk", "unpermute_qk", "load_llama", "dequantize",
]

# ------------------------------------------------------------------------------ the names
#: GGUF tensor name -> our parameter name, for a Llama-style model (``{i}`` is the layer).
#: ``output.weight`` is absent from files with tied embeddings (like SmolLM2): the output
#: layer then reuses ``token_embd.weight``.
LLAMA_TENSOR_NAMES: dict[str, str] = {
    "token_embd.weight": "tok_emb.weight",  # (V, E) token embedding
    "blk.{i}.attn_norm.weight": "blocks.{i}.attn_norm.weight",  # (E,) RMSNorm before attention
    "blk.{i}.attn_q.weight": "blocks.{i}.attn.q_proj.weight",  # (H*dh, E)
    "blk.{i}.attn_k.weight": "blocks.{i}.attn.k_proj.weight",  # (H_kv*dh, E)
    "blk.{i}.attn_v.weight": "blocks.{i}.attn.v_proj.weight",  # (H_kv*dh, E)
    "blk.{i}.attn_output.weight": "blocks.{i}.attn.out_proj.weight",  # (E, H*dh), W_o
    "blk.{i}.ffn_norm.weight": "blocks.{i}.mlp_norm.weight",  # (E,) RMSNorm before the MLP
    "blk.{i}.ffn_gate.weight": "blocks.{i}.mlp.gate_proj.weight",  # (d_ff, E)
    "blk.{i}.ffn_up.weight": "blocks.{i}.mlp.up_proj.weight",  # (d_ff, E)
    "blk.{i}.ffn_down.weight": "blocks.{i}.mlp.down_proj.weight",  # (E, d_ff)
    "output_norm.weight": "norm.weight",  # (E,) final RMSNorm
    "output.weight": "lm_head.weight",  # (V, E), only when not tied
}

_LAYER = re.compile(r"^blk\.(\d+)\.(.+)$")


def attnedu_name(gguf_name: str) -> str:
    """Our parameter name for a GGUF tensor name, e.g. ``blk.3.attn_q.weight`` ->
    ``blocks.3.attn.q_proj.weight``. Raises ``KeyError`` for a name the table lacks."""
    match = _LAYER.match(gguf_name)
    if match:
        layer, rest = match.groups()
        template = LLAMA_TENSOR_NAMES.get("blk.{i}." + rest)
        if template is not None:
            return template.format(i=int(layer))
    elif gguf_name in LLAMA_TENSOR_NAMES:
        return LLAMA_TENSOR_NAMES[gguf_name]
    raise KeyError(f"no attnedu parameter for the GGUF tensor {gguf_name!r}")


# ---------------------------------------------------------------------- reading the file
#: GGUF's metadata value types: type id -> (``struct`` format, size in bytes) of one value.
#: Type 8 is a string (a uint64 length, then UTF-8 bytes), type 9 an array (the type of its
#: items as a uint32, their number as a uint64, then the items).
_SCALARS = {0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4), 6: ("f", 4),
            7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8)}
_STRING, _ARRAY = 8, 9


class GGUFTensor(NamedTuple):
    """One tensor of a :class:`GGUFFile`: the arguments ``gguf.quants.dequantize`` takes.

    ``dims``: GGUF's dimensions, fastest-varying first (``(576, 49152)`` for the embedding);
    ``data``: the stored bytes, ``(*reversed(dims)[:-1], bytes per row)`` uint8, mapped from the file;
    ``tensor_type``: a ``gguf.GGMLQuantizationType`` (``Q4_1``, ``Q8_0``, ``F32``, ...)."""

    name: str
    dims: tuple[int, ...]
    tensor_type: object
    data: np.ndarray


class GGUFFile:
    """A GGUF file (version 2 or 3, little-endian), read with ``struct`` over a memory map.

    Its layout: the magic ``b"GGUF"``, the version (uint32), the number of tensors and of
    metadata keys (uint64 each); each key (a string), its value type (uint32) and value; each
    tensor's name, number of dimensions (uint32), dimensions (uint64 each), type (uint32) and
    offset (uint64); then, from the next multiple of ``general.alignment`` (default 32), the
    tensors' bytes. ``metadata``: key -> Python value; ``tensors``: a list of :class:`GGUFTensor`.
    """

    def __init__(self, path: str | os.PathLike):
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no GGUF file at {self.path}")
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")  # the whole file, read-only, read when touched
        buf = memoryview(raw)
        if bytes(buf[:4]) != b"GGUF":
            raise ValueError(f"{self.path} is not a GGUF file (it does not start with b'GGUF')")
        (self.version,) = struct.unpack_from("<I", buf, 4)
        if self.version not in (2, 3):
            raise ValueError(f"{self.path}: GGUF version {self.version} (or a big-endian file) is not "
                             "supported; this reader reads versions 2 and 3, little-endian")
        n_tensors, n_keys = struct.unpack_from("<QQ", buf, 8)
        self._buf, self._at = buf, 24
        self.metadata = {}
        for _ in range(n_keys):
            key = self._string()
            self.metadata[key] = self._value(self._scalar("I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = tuple(self._scalar("Q") for _ in range(self._scalar("I")))
            infos.append((name, dims, GGMLQuantizationType(self._scalar("I")), self._scalar("Q")))
        alignment = self.metadata.get("general.alignment", 32)
        start = -(-self._at // alignment) * alignment  # the next multiple of the alignment
        self.tensors = []
        for name, dims, kind, offset in infos:
            block, block_bytes = GGML_QUANT_SIZES[kind]  # numbers per block, bytes per block
            row_bytes = dims[0] // block * block_bytes
            rows = int(np.prod(dims[1:], dtype=np.int64))
            at = start + offset
            data = raw[at : at + rows * row_bytes].reshape(*reversed(dims[1:]), row_bytes)
            self.tensors.append(GGUFTensor(name, dims, kind, data))
        del self._buf

    def _scalar(self, fmt: str):
        (value,) = struct.unpack_from("<" + fmt, self._buf, self._at)
        self._at += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        n = self._scalar("Q")
        text = bytes(self._buf[self._at : self._at + n]).decode("utf-8")
        self._at += n
        return text

    def _value(self, kind: int):
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            item, n = self._scalar("I"), self._scalar("Q")
            if item in _SCALARS and item != 7:  # numbers: all at once
                fmt, size = _SCALARS[item]
                values = np.frombuffer(self._buf, dtype="<" + fmt, count=n, offset=self._at).tolist()
                self._at += n * size
                return values
            return [self._value(item) for _ in range(n)]
        if kind not in _SCALARS:
            raise ValueError(f"{self.path}: unknown GGUF value type {kind} at byte {self._at}")
        return self._scalar(_SCALARS[kind][0])


def _reader(path: str | os.PathLike) -> GGUFFile:
    return GGUFFile(path)


def _field_value(field):
    """A metadata field as a Python value: str, int, float, bool, or a list of them."""
    from gguf import GGUFValueType

    def scalar(part, kind):
        if kind == GGUFValueType.STRING:
            return bytes(part).decode("utf-8")
        return part.tolist()[0]

    if field.types[0] == GGUFValueType.ARRAY:
        return [scalar(field.parts[i], field.types[-1]) for i in field.data]
    return scalar(field.parts[field.data[0]], field.types[0])


def read_metadata(path_or_reader) -> dict:
    """Every metadata key of a GGUF file, as Python values (``general.architecture``,
    ``llama.block_count``, ``tokenizer.ggml.tokens``, ``tokenizer.chat_template``, ...).
    ``path_or_reader``: a path, a :class:`GGUFFile` or a ``gguf.GGUFReader``."""
    if isinstance(path_or_reader, GGUFFile):
        return dict(path_or_reader.metadata)
    if hasattr(path_or_reader, "fields"):  # gguf.GGUFReader
        return {key: _field_value(field) for key, field in path_or_reader.fields.items()
                if not key.startswith("GGUF.")}
    return dict(_reader(path_or_reader).metadata)


# ---------------------------------------------------------------------------- dequantising
#: The block formats :func:`dequantize` reads itself: type name -> (bytes, numbers) per block.
BLOCKS = {"Q4_1": (20, 32), "Q8_0": (34, 32)}


def _blocks(data: np.ndarray, kind: str) -> np.ndarray:
    """The stored bytes ``(..., bytes per row)`` as one block per row: ``(n_blocks, bytes per block)``."""
    size, _ = BLOCKS[kind]
    if data.dtype != np.uint8 or data.ndim < 1 or data.shape[-1] % size:
        raise ValueError(f"{kind} data must be uint8 rows of whole {size}-byte blocks, got {data.dtype} {data.shape}")
    return data.reshape(-1, size)


def _dequantize_q4_1(data: np.ndarray) -> np.ndarray:
    """``Q4_1``: each block of 32 numbers is a scale ``d`` and a minimum ``m`` (float16) and 16
    bytes of 4-bit integers ``q`` (byte j: number j in its low half, number j + 16 in its high
    half); ``x = d q + m``. Every block at once: ``(n, 20)`` bytes -> ``(n, 32)`` float32."""
    blocks = _blocks(data, "Q4_1")
    d = blocks[:, 0:2].view(np.float16).astype(np.float32)  # (n, 1)
    m = blocks[:, 2:4].view(np.float16).astype(np.float32)  # (n, 1)
    packed = blocks[:, 4:]  # (n, 16)
    x = np.empty((len(blocks), 32), np.float32)
    np.bitwise_and(packed, 0x0F, out=x[:, :16], casting="unsafe")  # numbers 0-15
    np.right_shift(packed, 4, out=x[:, 16:], casting="unsafe")  # numbers 16-31
    x *= d  # in place: d q, then d q + m, in float32 as llama.cpp and gguf compute it
    x += m
    return x


def _dequantize_q8_0(data: np.ndarray) -> np.ndarray:
    """``Q8_0``: each block of 32 numbers is a scale ``d`` (float16) and 32 signed bytes ``q``;
    ``x = d q``. ``(n, 34)`` bytes -> ``(n, 32)`` float32."""
    blocks = _blocks(data, "Q8_0")
    d = blocks[:, 0:2].view(np.float16).astype(np.float32)  # (n, 1)
    x = blocks[:, 2:].view(np.int8).astype(np.float32)  # (n, 32)
    x *= d
    return x


_DEQUANTIZE = {"Q4_1": _dequantize_q4_1, "Q8_0": _dequantize_q8_0}


def dequantize(data: np.ndarray, tensor_type) -> np.ndarray:
    """A stored tensor as numbers: ``data`` ``(..., bytes per row)`` uint8, as a
    :class:`GGUFTensor` holds it, -> ``(..., numbers per row)``, the arguments and result of
    ``gguf.quants.dequantize``. ``Q4_1`` and ``Q8_0`` are read here, every block at once (chapter 7
    reads one block by hand); other types by ``gguf.quants.dequantize``."""
    kind = getattr(tensor_type, "name", None)
    if kind not in _DEQUANTIZE:
        from gguf.quants import dequantize as gguf_dequantize

        return gguf_dequantize(data, tensor_type)
    size, numbers = BLOCKS[kind]
    rows = _DEQUANTIZE[kind](data)  # (n_blocks, numbers)
    return rows.reshape(*data.shape[:-1], data.shape[-1] // size * numbers)


def read_tensors(path_or_reader, names=None) -> dict[str, np.ndarray]:
    """The tensors of a GGUF file, dequantised to float32 numpy arrays shaped as PyTorch wants
    (``(out_features, in_features)`` for a matrix). ``names``: only these (default: all).
    ``path_or_reader``: a path, a :class:`GGUFFile` or a ``gguf.GGUFReader``."""
    reader = path_or_reader if hasattr(path_or_reader, "tensors") else _reader(path_or_reader)
    wanted = None if names is None else set(names)
    out = {}
    for tensor in reader.tensors:
        if wanted is None or tensor.name in wanted:
            array = dequantize(tensor.data, tensor.tensor_type)  # (..., numbers per row)
            array = np.ascontiguousarray(array, dtype=np.float32)
            out[tensor.name] = array if array.flags.writeable else array.copy()  # F32 ones map the file
    if wanted is not None and wanted - out.keys():
        raise KeyError(f"the GGUF file has no tensors named {sorted(wanted - out.keys())}")
    return out


def llama_hparams(metadata: dict) -> dict:
    """The hyper-parameters of a Llama-style model from its GGUF metadata, under our names
    (:class:`attnedu.llama.LlamaConfig`'s): GGUF's ``embedding_length`` is ``d_model``,
    ``attention.head_count`` ``n_head``, ``feed_forward_length`` ``d_ff``, ``context_length``
    ``context``, and so on."""
    arch = metadata.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a Llama-style GGUF (general.architecture = 'llama'), got {arch!r}")

    def get(key, default=None):
        value = metadata.get(f"{arch}.{key}", default)
        if value is None:
            raise ValueError(f"the GGUF metadata has no {arch}.{key}")
        return value

    n_head, d_model = get("attention.head_count"), get("embedding_length")
    return {
        "vocab_size": metadata.get(f"{arch}.vocab_size") or len(metadata["tokenizer.ggml.tokens"]),
        "d_model": d_model,
        "n_layer": get("block_count"),
        "n_head": n_head,
        "n_kv_head": get("attention.head_count_kv", n_head),
        "head_dim": get("rope.dimension_count", d_model // n_head),
        "d_ff": get("feed_forward_length"),
        "rope_base": float(get("rope.freq_base", 10000.0)),
        "rms_eps": float(get("attention.layer_norm_rms_epsilon")),
        "context": get("context_length"),
    }


# --------------------------------------------------------------------------- tokenizer
def build_tokenizer(metadata: dict):
    """A ``tokenizers.Tokenizer`` (byte-level BPE) from the GGUF vocabulary and merges.

    GGUF stores the vocabulary already in GPT-2's byte alphabet (``Ġ`` for a space), the merges
    as ``"a b"`` strings, and marks control tokens (``<|im_start|>``, ...) with token type 3;
    those are added as special tokens so they are never split. The pre-tokenizer is
    SmolLM2's (llama.cpp calls it ``smollm``): every digit on its own, then GPT-2's split.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if metadata.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"only byte-level BPE ('gpt2') tokenizers are supported, got "
                         f"{metadata.get('tokenizer.ggml.model')!r}")
    tokens = metadata["tokenizer.ggml.tokens"]
    vocab = {token: index for index, token in enumerate(tokens)}
    merges = [tuple(merge.split(" ", 1)) for merge in metadata["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    pre = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if metadata.get("tokenizer.ggml.pre") == "smollm":
        pre.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tokenizer.decoder = decoders.ByteLevel()
    types = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    control = [AddedToken(token, special=True, normalized=False) for token, kind in zip(tokens, types) if kind == 3]
    tokenizer.add_special_tokens(control)
    return tokenizer


# ----------------------------------------------------------------- the rotary reordering
def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's reordering of ``W_q`` or ``W_k`` rows ``(n_head * dh, E)``: within each head,
    the feature pairs ``(i, i + dh/2)`` (halves layout) become ``(2i, 2i+1)`` (adjacent)."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of an even size")
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`permute_qk` (what ``transformers`` applies when it loads a GGUF)."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of an even size")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------------------- all at once
def load_llama(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray], dict]:
    """Read a Llama-style GGUF: ``(hparams, tensors, metadata)``.

    ``tensors`` maps the file's tensor names to float32 arrays, in the file's (adjacent)
    rotary layout; :func:`attnedu_name` gives the parameter each one belongs to.
    """
    reader = _reader(path)
    metadata = read_metadata(reader)
    return llama_hparams(metadata), read_tensors(reader), metadata
