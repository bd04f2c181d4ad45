"""The level-by-level (apriori) search of a CONTRIBUTION_ANALYSIS model's segments.

With a support threshold (``min_apriori_support > 0``, or ``top_k_insights_by_apriori_support``)
most segments of many dimensions are pruned, and computing all 2**d grouping sets is neither
needed nor feasible past a dozen dimensions. A segment's apriori support (its share of the
population's test or control metric) can only shrink when a dimension is added, the metric
columns being non-negative, so the search goes level by level, as BigQuery ML's apriori does:

* level 0 is the ``all`` segment and level 1 every single dimension, in one query;
* level L's candidate dimension subsets are those whose every (L-1)-subset still has a segment
  that reached the threshold (a subset none of whose segments survived has no surviving child);
* each level is ONE DuckDB ``GROUP BY GROUPING SETS`` query over its candidate subsets, whose
  segments below the threshold are never stored.

With top-k the threshold is the k-th highest support found so far: it only rises as segments are
found, so whatever falls below it can never enter the final top k, nor can its children.

The segments found are stored in a temporary table of the same columns as the single query's
cube (the dimensions, ``_gid`` = GROUPING_ID over every dimension, the sums), and
:func:`shipyard.sql.contribution_analysis.insights_sql` scores them exactly as it scores the
full cube: the output is the same rows, values and order.
"""

from __future__ import annotations

import itertools
from typing import Any

from shipyard.errors import InvalidArgument
from shipyard.warehouse import fetch_arrow, quote_identifier

__all__ = ["CUBE_TABLE", "search_segments"]

#: The temporary tables the search writes on the statement's cursor.
CUBE_TABLE = "__shipyard_contribution_cube"
_KEPT_TABLE = "__shipyard_contribution_kept"
#: Grouping sets per query: one query per level, split past this many subsets.
_SETS_PER_QUERY = 2048


def _gid_expr(dims: list[str], used: list[int]) -> str:
    """``_gid`` as GROUPING_ID over every dimension would give it (the first dimension the most
    significant bit, a bit set where the dimension is not grouped), from GROUPING() of the
    dimensions this query groups by and constant bits for the others."""
    d = len(dims)
    constant = sum(1 << (d - 1 - i) for i in range(d) if i not in used)
    terms = [
        f"(CAST(GROUPING({quote_identifier(dims[i])}) AS BIGINT) << {d - 1 - i})" for i in used
    ]
    return " + ".join([str(constant), *terms])


def _subsets_of(gid: int, d: int) -> frozenset[int]:
    """The dimension indices a ``_gid`` groups by."""
    return frozenset(i for i in range(d) if not gid >> (d - 1 - i) & 1)


def _candidates(alive: set[frozenset[int]], level: int, d: int) -> list[tuple[int, ...]]:
    """Apriori-gen: the ``level``-subsets whose every (level-1)-subset is alive."""
    out: list[tuple[int, ...]] = []
    for parent in sorted(tuple(sorted(s)) for s in alive if len(s) == level - 1):
        start = parent[-1] + 1 if parent else 0
        for j in range(start, d):
            child = (*parent, j)
            if all(frozenset(sub) in alive for sub in itertools.combinations(child, level - 1)):
                out.append(child)
    return out


def search_segments(
    cur: Any,
    rows: str,
    dims: list[str],
    aggregates: list[str],
    not_null: str,
    *,
    min_support: float | None,
    top_k: int | None,
    exhaustive_max: int,
) -> str | None:
    """Find every segment that can reach the support threshold (and the ``all`` segment) into
    :data:`CUBE_TABLE` on ``cur``; return the table's name, or None when nothing can prune
    (top-k of an all-zero metric) and ``d <= exhaustive_max`` (else an error). ``aggregates``
    are the single query's aggregate expressions (``… AS _nt`` …); ``not_null`` its filter."""
    d = len(dims)
    full = (1 << d) - 1
    qdims = [quote_identifier(q) for q in dims]
    # the rows the search reads once per level: only the columns it needs, NULLs left out
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE {_KEPT_TABLE} AS SELECT * FROM {rows} WHERE {not_null}"
    )
    sums = [a.rsplit(" AS ", 1)[1] for a in aggregates if a.startswith("SUM(")]
    zeros = ", ".join(f"COALESCE({s}, 0.0) AS {s}" for s in sums)
    pop = f"(SELECT * FROM {CUBE_TABLE} WHERE _gid = {full})"
    support = "GREATEST(c._nt / NULLIF(p._nt, 0), c._nc / NULLIF(p._nc, 0))"

    def level_query(subsets: list[tuple[int, ...]]) -> str:
        used = sorted({i for s in subsets for i in s})
        sets = ", ".join("(" + ", ".join(qdims[i] for i in s) + ")" for s in subsets)
        cols = "".join(f"{qdims[i]}, " for i in used)
        return (
            f"SELECT * REPLACE ({zeros}) FROM (SELECT {cols}"
            f"{_gid_expr(dims, used)} AS _gid, {', '.join(aggregates)} "
            f"FROM {_KEPT_TABLE} GROUP BY GROUPING SETS ({sets}))"
        )

    try:
        # level 0 and 1 in one query: the population's sums are needed to score anything
        first = [(), *((i,) for i in range(d))]
        cur.execute(f"CREATE OR REPLACE TEMP TABLE {CUBE_TABLE} AS {level_query(first)}")
        if top_k is not None and not _has_support(cur, full):
            if d > exhaustive_max:
                raise InvalidArgument(
                    f"the contribution metric sums to 0 in both test and control rows, so no "
                    f"segment has an apriori support to rank {d} dimension columns by; use at "
                    f"most {exhaustive_max} dimension columns, or a metric that is not all zero",
                    option="top_k_insights_by_apriori_support",
                )
            cur.execute(f"DROP TABLE {CUBE_TABLE}")
            return None  # nothing prunes: the caller's single query ranks every segment
        threshold = _threshold(cur, support, pop, min_support, top_k)
        _prune(cur, support, pop, threshold, full)
        alive: set[frozenset[int]] = _alive(cur, d, level=1) | {frozenset()}
        level = 2
        while level <= d:
            candidates = _candidates(alive, level, d)
            if not candidates:
                break
            keep = "" if threshold is None else f" WHERE {support} >= {threshold!r}"
            for start in range(0, len(candidates), _SETS_PER_QUERY):
                chunk = candidates[start : start + _SETS_PER_QUERY]
                cur.execute(
                    f"INSERT INTO {CUBE_TABLE} BY NAME SELECT c.* FROM ({level_query(chunk)}) c, "
                    f"{pop} p{keep}"
                )
            threshold = _threshold(cur, support, pop, min_support, top_k)
            _prune(cur, support, pop, threshold, full)
            alive |= _alive(cur, d, level=level)
            level += 1
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {_KEPT_TABLE}")
    return CUBE_TABLE


def _threshold(
    cur: Any, support: str, pop: str, min_support: float | None, top_k: int | None
) -> float | None:
    """The support below which a segment (and every child of it) is out: min_apriori_support,
    or the k-th highest support found so far (None while fewer than k have a support)."""
    if top_k is None:
        return float(min_support) if min_support else None
    row = fetch_arrow(
        cur,
        f"SELECT {support} AS s FROM {CUBE_TABLE} c, {pop} p WHERE {support} IS NOT NULL "
        f"ORDER BY s DESC LIMIT 1 OFFSET {int(top_k) - 1}",
    ).to_pylist()
    return None if not row else float(row[0]["s"])


def _prune(cur: Any, support: str, pop: str, threshold: float | None, full: int) -> None:
    """Delete the level's segments below the threshold (or of no support); ``all`` stays, as
    the scoring query reads the population's sums from it."""
    if threshold is None:
        return
    cur.execute(
        f"DELETE FROM {CUBE_TABLE} c USING {pop} p WHERE c._gid <> {full} "
        f"AND NOT COALESCE({support} >= {threshold!r}, FALSE)"
    )


def _alive(cur: Any, d: int, *, level: int) -> set[frozenset[int]]:
    """The ``level``-subsets of the dimensions that still have a segment."""
    gids = fetch_arrow(cur, f"SELECT DISTINCT _gid FROM {CUBE_TABLE}").column(0).to_pylist()
    subsets = {_subsets_of(g, d) for g in gids}
    return {s for s in subsets if len(s) == level}


def _has_support(cur: Any, full: int) -> bool:
    """Whether the metric sums to more than 0 in test or control rows: otherwise no segment has
    an apriori support, top-k ranks segments by their order alone and nothing prunes."""
    row = fetch_arrow(cur, f"SELECT _nt, _nc FROM {CUBE_TABLE} WHERE _gid = {full}").to_pylist()
    return bool(row) and bool(row[0]["_nt"] or row[0]["_nc"])
