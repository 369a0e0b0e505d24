"""Data governance for chapters 13 and 14: what a database of a generative-AI system must do
with what it stores, and who may read it, one concept per module.

==============  =========================================================================
module          what is in it
==============  =========================================================================
``portable``    :func:`ddl`: one ``CREATE TABLE`` for SQLite and PostgreSQL (``{id}``,
                ``{blob}``, ``{json}``, ``{time}``, ``{now}`` become each backend's
                types); :func:`json_field`, :func:`day_of`: two expressions that differ
``dedup``       :func:`normalise_text`, :func:`content_key` (exact duplicates by a hash of
                the normalised text; :func:`exact_duplicate_groups`), :func:`near_duplicate_pairs` (cosine of embeddings;
                :func:`near_duplicate_index_pairs`: the pairs alone), :func:`deduplicate`,
                :func:`duplicate_groups` (in SQL, on a store)
``redact``      :func:`pseudonym` (keyed HMAC of a user id), :func:`find_pii` (emails,
                phone numbers, names as :class:`Span` s), :func:`redact`,
                :func:`span_scores` (precision and recall against labelled spans, per
                kind; :func:`span_precision_recall`: over all kinds)
``crypto``      :class:`FieldCipher`: AES-256-GCM for one field at a time, the key kept
                away from the data (:func:`key_from_env`); envelope encryption
                (:func:`envelope_encrypt`, :func:`envelope_decrypt`, :func:`rotate_key`:
                a data key per value, wrapped by a key-encryption key)
``access``      :func:`authorised_rows`: the rows that PostgreSQL's row-level security
                lets a role read, by its rules, without a server (:func:`policy`)
``versions``    :func:`hash_bytes`, :func:`hash_file`, :func:`hash_rows` (content hashes),
                :class:`VersionRegistry` (a table of data and model versions),
                :func:`dvc_pointer` (what ``dvc add`` would write)
``tracking``    :func:`open_tracking`: MLflow's runs and model registry, offline and quiet, in
                one folder (:class:`Tracking`, closed before the folder is removed);
                :func:`checkpoint_record`: a GPT checkpoint's record as MLflow params and metrics
``graph``       :class:`KnowledgeGraph`: entities and relations in two tables, queried
                with recursive SQL (:data:`REACHABLE_SQL`, :data:`PATH_SQL`);
                :func:`prerequisites`, :func:`example_graph` (a small course's graph),
                :data:`COURSE_REQUIRES` (this course's, chapter 13's)

Chapter 13 uses ``portable``, ``dedup``, ``redact``, ``versions``, ``tracking`` and ``graph``;
chapter 14 uses ``crypto`` and ``access``.
==============  =========================================================================

Everything that touches a database works on both backends of :mod:`attnedu.store`.
"""

from .access import authorised_rows, policy
from .crypto import FieldCipher, envelope_decrypt, envelope_encrypt, generate_key, key_from_env, rewrap, rotate_key
from .dedup import (content_key, deduplicate, duplicate_groups, exact_duplicate_groups, near_duplicate_index_pairs,
                    near_duplicate_pairs, normalise_text)
from .graph import COURSE_REQUIRES, EXAMPLE_EDGES, KnowledgeGraph, example_graph, prerequisites
from .portable import day_of, ddl, json_field
from .redact import PII_KINDS, Span, find_pii, pseudonym, redact, span_precision_recall, span_scores
from .tracking import Tracking, checkpoint_record, open_tracking
from .versions import VersionRegistry, dvc_pointer, hash_bytes, hash_file, hash_rows

__all__ = [
    "ddl", "json_field", "day_of",
    "normalise_text", "content_key", "exact_duplicate_groups", "near_duplicate_pairs", "near_duplicate_index_pairs", "deduplicate",
    "duplicate_groups",
    "PII_KINDS", "Span", "pseudonym", "find_pii", "redact", "span_scores", "span_precision_recall",
    "FieldCipher", "generate_key", "key_from_env", "envelope_encrypt", "envelope_decrypt", "rewrap", "rotate_key",
    "authorised_rows", "policy",
    "hash_bytes", "hash_file", "hash_rows", "VersionRegistry", "dvc_pointer",
    "open_tracking", "Tracking", "checkpoint_record",
    "KnowledgeGraph", "prerequisites", "example_graph", "EXAMPLE_EDGES", "COURSE_REQUIRES",
]
