"""A knowledge graph in two tables, queried with recursive SQL on either backend.

Entities (a concept, a chapter, a model) are rows of ``entities``; each relation is a row
of ``relations``, ``(src) -[rel]-> (dst)``, e.g. ``multi-head attention -[requires]->
scaled dot-product attention``. A relational database needs no graph engine for this:
``WITH RECURSIVE`` follows the edges hop after hop. Its first part (the *anchor*) picks
the starting rows; its second joins the rows found so far with ``relations`` once more,
and the database repeats that until it adds no new row::

    WITH RECURSIVE reach (id, depth) AS (
        SELECT dst, 1 FROM relations WHERE src = :start AND rel = :rel    -- one hop
      UNION
        SELECT r.dst, reach.depth + 1 FROM relations AS r JOIN reach ON r.src = reach.id
        WHERE r.rel = :rel AND reach.depth < :max_depth                 -- one more hop
    )

``UNION`` (not ``UNION ALL``) drops rows already found, and the depth limit ends the walk
even if the relation has a cycle. Graph databases (Neo4j) and SQL/PGQ's ``MATCH`` write such
queries more briefly; the tables and the walk are the same.
"""

from __future__ import annotations

from .._validate import positive_int
from .portable import ddl

__all__ = ["KnowledgeGraph", "GRAPH_TABLES", "REACHABLE_SQL", "PATH_SQL", "prerequisites", "example_graph",
           "EXAMPLE_EDGES", "COURSE_REQUIRES"]

GRAPH_TABLES = [
    """CREATE TABLE IF NOT EXISTS entities (
    id   {id},
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL                  -- 'concept', 'chapter', 'model', ...
)""",
    """CREATE TABLE IF NOT EXISTS relations (
    src    BIGINT NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    rel    TEXT NOT NULL,               -- 'requires', 'introduced_in', ...
    dst    BIGINT NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    source TEXT,                        -- where the fact comes from (a section label, a document)
    PRIMARY KEY (src, rel, dst)
)""",
    "CREATE INDEX IF NOT EXISTS relations_dst ON relations (dst, rel)",  # walking backwards
]

# Everything `start` reaches by following `rel` edges, with the fewest hops to each.
REACHABLE_SQL = """
WITH RECURSIVE reach (id, depth) AS (
    SELECT r.{to}, 1
    FROM relations AS r JOIN entities AS e ON e.id = r.{frm}
    WHERE e.name = ? AND r.rel = ?
  UNION
    SELECT r.{to}, reach.depth + 1
    FROM relations AS r JOIN reach ON r.{frm} = reach.id
    WHERE r.rel = ? AND reach.depth < ?
)
SELECT e.name, min(reach.depth) AS depth
FROM reach JOIN entities AS e ON e.id = reach.id
GROUP BY e.name
ORDER BY depth, e.name
"""

# A shortest chain of edges (any relation) from one entity to another. `path` lists the
# ids visited, ',3,8,5,', so that a walk never enters an entity twice.
PATH_SQL = """
WITH RECURSIVE walk (id, depth, path, rels) AS (
    SELECT e.id, 0, ',' || e.id || ',', ''
    FROM entities AS e WHERE e.name = ?
  UNION ALL
    SELECT r.dst, walk.depth + 1, walk.path || r.dst || ',', walk.rels || r.rel || ','
    FROM walk JOIN relations AS r ON r.src = walk.id
    WHERE walk.depth < ? AND walk.path NOT LIKE '%,' || r.dst || ',%'
)
SELECT walk.path, walk.rels
FROM walk JOIN entities AS e ON e.id = walk.id
WHERE e.name = ?
ORDER BY walk.depth, walk.path
LIMIT 1
"""


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _depth(value) -> int:
    return positive_int(value, "max_depth")


class KnowledgeGraph:
    """Entities and relations in the tables of a store (either backend).

    >>> kg = KnowledgeGraph(store)
    >>> kg.relate("multi-head attention", "requires", "scaled dot-product attention")
    >>> kg.reachable("multi-head attention", "requires")    # [(name, hops), ...]
    """

    def __init__(self, store):
        self.store = store
        for statement in GRAPH_TABLES:
            store.query(ddl(store, statement))

    def query(self, sql: str, params=()) -> list[tuple]:
        """Run SQL written with ``?`` placeholders on the graph's store (either backend)."""
        return self.store.query(sql, params)

    def add_entity(self, name: str, kind: str = "concept") -> int:
        """The entity's id, adding it if it is new (an existing entity keeps its kind)."""
        name, kind = _name(name, "name"), _name(kind, "kind")
        self.query("INSERT INTO entities (name, kind) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [name, kind])
        return self.query("SELECT id FROM entities WHERE name = ?", [name])[0][0]

    def relate(self, src: str, rel: str, dst: str, *, source: str | None = None,
               src_kind: str = "concept", dst_kind: str = "concept") -> None:
        """Add the edge ``src -[rel]-> dst`` (and the entities, if new); adding it twice is harmless."""
        rel = _name(rel, "rel")
        with self.store.transaction():
            a, b = self.add_entity(src, src_kind), self.add_entity(dst, dst_kind)
            self.query("INSERT INTO relations (src, rel, dst, source) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (src, rel, dst) DO NOTHING", [a, rel, b, source])

    def reachable(self, name: str, rel: str, *, max_depth: int = 10, backwards: bool = False) -> list[tuple[str, int]]:
        """``[(entity, hops), ...]`` that ``name`` reaches along ``rel`` edges (``backwards``:
        the entities that reach ``name``), fewest hops first, then by name."""
        sql = REACHABLE_SQL.format(frm="dst", to="src") if backwards else REACHABLE_SQL.format(frm="src", to="dst")
        rows = self.query(sql, [_name(name, "name"), _name(rel, "rel"), rel, _depth(max_depth)])
        return [(r[0], int(r[1])) for r in rows]

    def path(self, src: str, dst: str, *, max_depth: int = 6) -> list[str] | None:
        """A shortest chain ``[src, rel, entity, rel, ..., dst]`` along any relations, or None."""
        rows = self.query(PATH_SQL, [_name(src, "src"), _depth(max_depth), _name(dst, "dst")])
        if not rows:
            return None
        ids = [int(i) for i in rows[0][0].strip(",").split(",")]
        rels = rows[0][1].strip(",").split(",") if rows[0][1] else []
        names = dict(self.query("SELECT id, name FROM entities"))
        out = [names[ids[0]]]
        for rel, i in zip(rels, ids[1:]):
            out += [rel, names[i]]
        return out

    def stats(self) -> dict:
        return {"entities": self.query("SELECT count(*) FROM entities")[0][0],
                "relations": self.query("SELECT count(*) FROM relations")[0][0]}


def prerequisites(graph: KnowledgeGraph, concept: str, *, max_depth: int = 50) -> list[tuple[str, int]]:
    r"""``[(name, hops), ...]``: everything ``concept`` requires, directly or through others, each
    with :math:`\text{hops}(c) = \min` over chains ``concept -[requires]-> ... -[requires]-> c``
    of the chain's number of edges; sorted by hops, then name. One recursive query
    (:meth:`KnowledgeGraph.reachable` along ``requires``); a concept that requires nothing,
    or is not in the graph, gives ``[]``."""
    if not isinstance(graph, KnowledgeGraph):
        raise ValueError(f"graph must be a KnowledgeGraph, got {type(graph).__name__}")
    return graph.reachable(_name(concept, "concept"), "requires", max_depth=max_depth)


EXAMPLE_EDGES = [  # (src, rel, dst): a small course, checkable by hand
    ("multi-head attention", "requires", "scaled dot-product attention"),
    ("scaled dot-product attention", "requires", "softmax"),
    ("scaled dot-product attention", "requires", "dot product"),
    ("softmax", "requires", "exponential"),
    ("transformer", "requires", "multi-head attention"),
    ("transformer", "requires", "layer normalisation"),
    ("transformer", "requires", "softmax"),  # a second, shorter route to softmax
    ("layer normalisation", "requires", "mean and variance"),
    ("softmax", "introduced_in", "chapter 1"),
    ("transformer", "introduced_in", "chapter 5"),
    ("chapter 5", "requires", "chapter 4"),  # not a concept's prerequisite: another relation's edge
]

COURSE_REQUIRES = [  # (src, dst): src requires dst, between this course's concepts; chapter 13's graph
    ("weighted average", "average"), ("softmax", "exponential"), ("softmax", "weighted average"),
    ("attention", "softmax"), ("attention", "weighted average"), ("attention", "dot product"),
    ("scaled dot-product attention", "attention"), ("scaled dot-product attention", "dot product"),
    ("self-attention", "scaled dot-product attention"), ("multi-head attention", "self-attention"),
    ("Transformer", "multi-head attention"), ("Transformer", "layer normalisation"),
    ("Transformer", "residual connection"), ("Transformer", "feed-forward network"),
    ("Transformer", "position embeddings"), ("KV cache", "Transformer"), ("GPT", "Transformer"),
    ("GPT", "causal mask"), ("causal mask", "scaled dot-product attention"), ("embedding", "Transformer"),
    ("vector search", "embedding"), ("vector search", "cosine similarity"), ("cosine similarity", "dot product"),
    ("BM25", "inverted index"), ("hybrid search", "BM25"), ("hybrid search", "vector search"),
    ("hybrid search", "reciprocal rank fusion"), ("retrieval-augmented generation", "hybrid search"),
    ("retrieval-augmented generation", "GPT"),
]


def example_graph(edges=EXAMPLE_EDGES) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` in a new in-memory SQLite store holding ``edges``, a list of
    ``(src, rel, dst)`` (default: :data:`EXAMPLE_EDGES`); close it with ``graph.store.close()``."""
    edges = list(edges)
    if not all(isinstance(e, (tuple, list)) and len(e) == 3 for e in edges):
        raise ValueError("edges must be a list of (src, rel, dst) triples")
    from ..store import open_store

    graph = KnowledgeGraph(open_store("sqlite://", dim=1))
    for src, rel, dst in edges:
        graph.relate(src, rel, dst)
    return graph
