"""attnedu: the helper library of the attnedu course on attention.

It grows chapter by chapter; each module holds one concept:

=====================  ===========  ==================================================
module                 chapter      what is in it
=====================  ===========  ==================================================
``functional``         1, 2, 3      softmax, weighted sums, kernels, attention pooling;
                                    scaled dot-product attention, masks; positions, RoPE
``nn``                 4, 5         ``MultiHeadAttention`` equal to torch's; ``KVCache``;
                                    ``FeedForward``, ``EncoderBlock``, ``DecoderBlock``
``models``             6            ``GPTConfig``, ``GPT`` with ``generate`` (temperature,
                                    top-k, top-p, KV cache)
``train``              6            a small, seeded training loop with a progress bar
``corpus``             6            the Python standard library as a character corpus;
                                    tiny Shakespeare (download with checksum and cache)
``rope``               7            rotary positions on torch tensors (GGUF's layout)
``pretrained``         7            all-MiniLM-L6-v2 and SmolLM2-135M-Instruct on the
                                    course's own modules; where model files are found
``retrieval``          10, 11       exact and FAISS vector search, BM25 (equal to SQLite
                                    FTS5), rank fusion, recall/MRR/nDCG (equal to trec_eval)
``coursebook``         11, 12       the book's own sections as passages, with stable labels
``rag``                12           chunking, prompts with numbered sources, a tiny
                                    reader that copies answers, grounding and citation
                                    checks, "ask the course"
``store``              12, 13       one store, two backends: SQLite (FTS5 + NumPy vectors)
                                    and PostgreSQL with pgvector (started from a wheel);
                                    a streaming replica and a hash-sharded table
``governance``         13           duplicates, pseudonyms and redaction, field encryption,
                                    content-hash versions, a knowledge graph in SQL
``plot``               1 and on     attention heatmaps with labelled axes
``data``               1            small, seeded data sets made on the spot
``checks``             every        checks that explain a wrong answer in one sentence
``grading``            (teachers)   release student versions and autograde, via nbgrader
=====================  ===========  ==================================================
"""

__version__ = "0.1.0"
