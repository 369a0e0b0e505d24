"""attnedu: the helper library of the attnedu course on attention.

It grows chapter by chapter, one concept per module. The code behind chapter N (the notebook
``notebooks/NN-<slug>``), and the module that checks its exercises:

=======  ==============================================================  ==================================
chapter  modules                                                         exercise checks
=======  ==============================================================  ==================================
1        ``functional``: softmax, weighted sums, kernels, attention      ``checks.ch01_weighted_sums``
         pooling, ``soft_lookup``; ``data``; ``plot``
2        ``functional``: ``scaled_dot_product_attention``,               ``checks.ch02_scaled_dot_product``
         ``causal_mask``, ``padding_mask``, ``attention_mask``,
         ``additive_scores``, ``saturating_dk``
3        ``functional``: ``self_attention``, ``sinusoidal_positions``,   ``checks.ch03_self_attention``
         ``apply_rope``; ``nn``: ``SelfAttention``; ``rope``, RoPE
         in PyTorch; ``diagrams``: ``qkv_flow``
4        ``functional``: ``split_heads``, ``merge_heads``,               ``checks.ch04_multi_head_attention``
         ``multi_head_attention``; ``nn``: ``MultiHeadAttention``
         (equal to torch's, with torch's interface),
         ``mha_parameter_count``, ``mha_flops``; ``diagrams``:
         ``heads_by_reshaping``
5        ``nn``: ``layer_norm``, ``encoder_block``,                      ``checks.ch05_transformer``
         ``cross_attention``, ``decoder_block``, ``FeedForward``,
         ``EncoderBlock``, ``DecoderBlock``, ``KVCache``;
         ``functional``: ``attention_pattern``; ``train``: the one
         training loop, ``sequence_accuracy``; ``diagrams``:
         ``transformer_block``
6        ``models``: ``GPTConfig``, ``GPT``, ``CausalSelfAttention``,    ``checks.ch06_gpt``
         ``kv_cache_step``, ``next_token_loss``, ``parameter_count``,
         sampling, ``generate``; ``train``: ``make_batch``,
         ``get_batch``, ``lm_batches``, ``lm_losses``; ``corpus``
7        ``llama``: ``grouped_query_attention``,                         ``checks.ch07_pretrained``
         ``GroupedQueryAttention``, ``RMSNorm``, ``SwiGLU``,
         ``LlamaConfig``, ``kv_cache_mib``, ``Llama``; ``rope``;
         ``pretrained``: ``minilm`` (all-MiniLM-L6-v2 on ``nn``,
         ``our_name``), ``smollm`` (SmolLM2 on ``llama``), ``gguf``,
         ``heads``, ``pooling`` (``mean_pool``)
8        ``vision``: ``patches`` (``patchify``, ``unpatchify``),         ``checks.ch08_beyond_text``
         ``vit`` (``ViT``, ``attention_rollout``), ``images`` (bundled
         digits and photos), ``scenes`` (drawn scenes and captions),
         ``captions``, ``superres``, ``clip``
         (``contrastive_loss``), ``text_to_image``
         (``sample_image``), ``checkpoints`` (shipped models and
         their recipes)
9        ``efficient``: ``tiled`` (``online_softmax_merge``,             ``checks.ch09_cost_of_attention``
         ``tiled_attention``, ``flash_attention``), ``measure``
         (time and peak memory in child processes,
         ``crossover_length``), ``kv_cache`` (``kv_cache_bytes``,
         grouped heads), ``window`` (sliding window,
         ``RollingKVCache``, ``rolling_buffer_attention``),
         ``linear``
10       ``retrieval``: ``vector`` (exact and FAISS search,              ``checks.ch10_vector_search``
         ``cosine_similarity``, ``top_k``, ``filter_after``),
         ``evaluation`` (``recall_at_k``, ``setting_for_recall``)
11       ``retrieval``: ``bm25`` (equal to SQLite's ``fts5``,            ``checks.ch11_hybrid_search``
         ``bm25_weight``), ``fusion`` (``rrf``, ``min_max_fusion``,
         ``rrf_on_keyword_questions``), ``evaluation`` (equal to
         trec_eval, ``query_metrics``, ``helped_and_hurt``);
         ``coursebook``: the book's sections as passages
12       ``rag``: ``chunking`` (``chunk_words``,                         ``checks.ch12_rag``
         ``chunks_vs_sections``), ``prompt``, ``reader`` (the tiny
         reader), ``grounding`` (``cited_sources``,
         ``cited_passages``, ``token_f1``), ``ask`` ("ask the
         course"); ``store``; ``coursebook``; ``diagrams``:
         ``rag_pipeline``
13       ``store``: SQLite or PostgreSQL with pgvector;                  ``checks.ch13_databases``
         ``governance``: ``portable``, ``dedup``
         (``exact_duplicate_groups``), ``redact``, ``versions``,
         ``graph`` (a knowledge graph, ``prerequisites``),
         ``tracking`` (MLflow's runs and model registry, offline)
14       ``store``: pgvector's HNSW search, ``milvus`` (Milvus Lite),   ``checks.ch14_databases_at_scale``
         ``cluster`` (a replica, a sharded table), ``quorum``
         (N, W, R), ``sharding`` (``ring_owner``,
         ``measure_movement``); ``governance``:
         ``access`` (``authorised_rows``), ``crypto`` (field and
         envelope encryption, ``rotate_key``)
=======  ==============================================================  ==================================

Across chapters: ``checks`` (one record per exercise, one loop that checks them all and
explains a wrong answer in one sentence; the records point at the functions above), ``build``
(executes every chapter once, for the book and the tests), ``grading``
(release student versions and autograde, via nbgrader, for teachers), ``explore`` (a figure
with sliders in JupyterLab, fixed settings in the book: chapters 1, 7 and 11), ``plot``'s
``course_style`` (the colour-blind-safe palette every chapter uses), ``doctor`` (is this
machine ready? ``ready(N)`` in each chapter's first cell), ``perf`` (the benchmarks' results
and the book's performance page), ``_validate`` (the argument checks every public function
shares), ``_torch_cache`` (the empty compile-cache folder that importing ``transformers`` makes
in /tmp is removed at exit).

One vocabulary runs through all of it. Sizes are ``d_model, n_head, n_kv_head, d_ff, context``
(and ``vocab_size``, ``n_layer``); a boolean mask is True where a position *may attend*
(``functional.causal_mask``, ``functional.padding_mask``); every decoder-only model (chapter 6's
``GPT``, chapter 7's ``Llama`` and ``SmolLM``) generates with
``generate(ids, max_new_tokens, *, temperature=0.0, top_k=None, top_p=None, seed=None)`` and
returns only the new ids; every model trains with ``train.train``. Other libraries' names
appear only where their weights are loaded (``pretrained``) and in ``nn.MultiHeadAttention``,
which keeps ``torch.nn.MultiheadAttention``'s signature and mask convention so that chapter 4
can prove the two equal.
"""

__version__ = "0.1.0"

from . import _torch_cache

_torch_cache.watch()  # chapter 7 imports transformers, which makes an empty /tmp/torchinductor_<user>
