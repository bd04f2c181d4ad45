"""ML.VALIDATE_DATA_DRIFT and ML.VALIDATE_DATA_SKEW: how far apart two distributions of each
column are, and whether that distance is an anomaly.

BigQuery ML computes both with TensorFlow Data Validation's distances, and so does this module:

* a categorical column (STRING, BOOL, BYTES, DATE, TIME; an ARRAY<STRING>'s elements) compares
  its value frequencies: ``L_INFTY`` (the default) is the largest difference between a value's
  share on the two sides; ``JENSEN_SHANNON_DIVERGENCE`` the divergence of the two shares.
  As TFDV's rank histogram, each side keeps its ``num_rank_histogram_buckets`` (50) most
  frequent values (ties: the first in sort order) and shares are of those values' total.
* a numerical column (integers, FLOAT64, NUMERIC, TIMESTAMP as Unix seconds) compares
  histograms: each side's ``num_histogram_buckets`` (10) equal-width buckets from its own min to
  its max (one point bucket when min == max); the two are aligned on the union of their bucket
  boundaries, each bucket's count spread evenly over its width (TFDV's ``AlignHistograms``), and
  the value is the Jensen-Shannon divergence in bits (in [0, 1]; the square of SciPy's
  ``jensenshannon(p, q, base=2)``, which is the distance).

NULL is missing, as in TFDV's statistics, and so are NaN and ±inf (as in ML.FEATURE_INFO; TFDV
gives NaN a bucket of its own): they count in no distribution. A side with
no values has no distribution: both sides empty is no change (0); one side empty against values
is the largest divergence (1; L_INFTY: the largest share of the other side, TFDV's arithmetic).

ML.VALIDATE_DATA_SKEW's baseline is the training data's distribution, stored with the model at
CREATE MODEL in ML.FEATURE_INFO's rows (``registry.preprocessing.training_distribution``: the
histogram of the strided sample the training median already reads, and the 50 most frequent
values with their counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import FailedPrecondition, InvalidArgument
from shipyard.registry.preprocessing import DISTRIBUTION_TOP_VALUES, category_counts, feature_kind
from shipyard.registry.statistics import HISTOGRAM_BUCKETS, bucket_counts, numeric_source

if TYPE_CHECKING:
    from shipyard.sql.functions import DataCall, MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "OUTPUT_SCHEMA",
    "Distribution",
    "jensen_shannon_divergence",
    "l_infinity_distance",
    "largest_share_difference",
    "ml_validate_data_drift",
    "ml_validate_data_skew",
    "validation_options",
]

OUTPUT_SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("metric", pa.string()),
        ("threshold", pa.float64()),
        ("value", pa.float64()),
        ("is_anomaly", pa.bool_()),
    ]
)

L_INFTY = "L_INFTY"
JENSEN_SHANNON = "JENSEN_SHANNON_DIVERGENCE"
_CATEGORICAL_METRICS = (L_INFTY, JENSEN_SHANNON)
_NUMERICAL_METRICS = (JENSEN_SHANNON,)
_DEFAULT_THRESHOLD = 0.3
_RANK_BUCKETS = DISTRIBUTION_TOP_VALUES  # the default num_rank_histogram_buckets: 50
_NUMERICAL_KINDS = ("numeric", "timestamp")
# Models whose ML.FEATURE_INFO rows are not served features: user and item ids, a time series'
# time column (BigQuery ML's monitoring functions do not take these types either).
_NO_SKEW = ("MATRIX_FACTORIZATION", "ARIMA_PLUS", "ARIMA_PLUS_XREG")

# (parameter, default, (low, high) inclusive) of the histogram sizes ML.VALIDATE_DATA_DRIFT
# takes; ML.VALIDATE_DATA_SKEW uses the defaults, as the training statistics were taken with them.
_BUCKET_PARAMS: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("num_histogram_buckets", HISTOGRAM_BUCKETS, (1, 1_000)),
    ("num_quantiles_histogram_buckets", 10, (1, 1_000)),  # quantile histograms: not compared
    ("num_values_histogram_buckets", 10, (1, 1_000)),  # values-per-row histograms: not compared
    ("num_rank_histogram_buckets", _RANK_BUCKETS, (1, 10_000)),
)
_COMMON_PARAMS: dict[str, type | tuple[type, ...]] = {
    "categorical_default_threshold": (int, float),
    "categorical_metric_type": str,
    "numerical_default_threshold": (int, float),
    "numerical_metric_type": str,
    "thresholds": list,
}


# --------------------------------------------------------------------------------------------
# distributions and distances


@dataclass(frozen=True, eq=False)
class Distribution:
    """One column's distribution on one side.

    Numerical: ``counts`` per bucket between consecutive ``edges`` (``edges == [v, v]``: a point
    mass at ``v``). Categorical: ``counts`` per value of ``values`` (JSON-spelt, sort order).
    """

    numerical: bool
    counts: np.ndarray
    edges: np.ndarray | None = None
    values: Sequence[Any] | None = None

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    @classmethod
    def histogram(cls, low: float, high: float, counts: Sequence[int] | np.ndarray) -> Distribution:
        counts = np.asarray(counts, dtype=np.float64)
        if len(counts) == 1 and not high > low:
            return cls(True, counts, edges=np.array([low, low]))
        edges = np.linspace(low, high, len(counts) + 1)
        if not np.all(np.diff(edges) > 0):  # a width below float resolution: one point mass
            return cls(True, np.array([counts.sum()]), edges=np.array([low, low]))
        return cls(True, counts, edges=edges)

    @classmethod
    def empty(cls, numerical: bool) -> Distribution:
        return cls(numerical, np.zeros(0), values=None if numerical else [])


def _numerical(col: pa.ChunkedArray, kind: str, buckets: int) -> Distribution:
    """The equal-width histogram of a numeric (or timestamp) column's finite values, chunk by
    chunk (no copy of the column)."""
    chunks = []
    for values in numeric_source(col, kind).chunk_values():
        low, high = np.min(values), np.max(values)
        if not (math.isfinite(low) and math.isfinite(high)):  # NaN (NULL) or ±inf somewhere
            values = values[np.isfinite(values)]
            if len(values) == 0:
                continue
            low, high = np.min(values), np.max(values)
        chunks.append((values, float(low), float(high)))
    if not chunks:
        return Distribution.empty(True)
    low, high = min(c[1] for c in chunks), max(c[2] for c in chunks)
    counts = np.sum([bucket_counts(values, low, high, buckets) for values, _, _ in chunks], axis=0)
    return Distribution.histogram(low, high, counts)


def _categorical(col: pa.ChunkedArray, kind: str) -> Distribution:
    values, counts = category_counts(col, kind)
    return Distribution(False, counts.astype(np.float64), values=values)


def _top(d: Distribution, k: int) -> tuple[list[Any], np.ndarray]:
    """The ``k`` most frequent values and their counts (TFDV's rank histogram); ties keep the
    sort order."""
    assert d.values is not None
    order = np.argsort(-d.counts, kind="stable")[:k]
    return [d.values[i] for i in order], d.counts[order]


def _aligned_categories(a: Distribution, b: Distribution, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each side's value shares over the union of their top ``k`` values (empty side: zeros)."""
    _, p, q = _category_union(a, b, k)
    return p, q


def _category_union(
    a: Distribution, b: Distribution, k: int
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The union of both sides' top ``k`` values and each side's shares over it."""
    values_a, counts_a = _top(a, k)
    values_b, counts_b = _top(b, k)
    index = {v: i for i, v in enumerate(values_a)}
    for v in values_b:
        index.setdefault(v, len(index))
    p, q = np.zeros(len(index)), np.zeros(len(index))
    p[: len(values_a)] = counts_a
    q[[index[v] for v in values_b]] = counts_b
    return list(index), _shares(p), _shares(q)


def largest_share_difference(a: Distribution, b: Distribution, k: int) -> tuple[float, Any]:
    """L_INFTY between two categorical distributions and the value whose share differs most
    (TFDV's anomaly description names it; ties: the first in sort order, as TFDV's ordered
    map); ``None`` when neither side has a value."""
    values, p, q = _category_union(a, b, k)
    if not values:
        return 0.0, None
    diff = np.abs(p - q)
    largest = float(np.max(diff))
    return largest, min(str(v) for v, d in zip(values, diff, strict=True) if d == largest)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else counts


def _edges(d: Distribution) -> np.ndarray:
    assert d.edges is not None, "a numerical distribution has bucket edges"
    return d.edges


def _aligned_histograms(a: Distribution, b: Distribution) -> tuple[np.ndarray, np.ndarray]:
    """Both histograms on the union of their bucket boundaries, each bucket's count spread
    evenly over its width, then the point masses matched by value (TFDV's AlignHistograms)."""
    sides = (a, b)
    edges = [_edges(d) for d in sides]
    spread = [bool(e[-1] > e[0]) for e in edges]  # False: a point mass at e[0]
    masses: list[list[np.ndarray]] = [[], []]
    if any(spread):
        boundaries = np.unique(np.concatenate([e for e, s in zip(edges, spread, strict=True) if s]))
        for side, d in enumerate(sides):
            if spread[side]:
                cumulative = np.concatenate([[0.0], np.cumsum(d.counts)])
                # np.interp clamps: no mass below the first edge, all of it above the last
                masses[side].append(np.diff(np.interp(boundaries, edges[side], cumulative)))
            else:
                masses[side].append(np.zeros(len(boundaries) - 1))
    points = sorted({float(e[0]) for e, s in zip(edges, spread, strict=True) if not s})
    for side, d in enumerate(sides):
        at = float(edges[side][0])
        masses[side].append(
            np.array([d.total if not spread[side] and p == at else 0.0 for p in points])
        )
    return _shares(np.concatenate(masses[0])), _shares(np.concatenate(masses[1]))


def jensen_shannon_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """JSD(p, q) in bits of two share vectors over the same buckets, capped at 1 as TFDV does
    (rounding can push it a hair above). An empty side against a non-empty one: 1."""
    p_empty, q_empty = not p.any(), not q.any()
    if p_empty or q_empty:
        return 0.0 if p_empty and q_empty else 1.0
    m = (p + q) / 2.0

    def kl(x: np.ndarray) -> float:
        present = x > 0
        return float(np.sum(x[present] * np.log2(x[present] / m[present])))

    return min((kl(p) + kl(q)) / 2.0, 1.0)


def l_infinity_distance(p: np.ndarray, q: np.ndarray) -> float:
    """The largest difference between a value's share on the two sides."""
    return float(np.max(np.abs(p - q))) if len(p) else 0.0


def distance(a: Distribution, b: Distribution, metric: str, rank_buckets: int) -> float:
    """``metric`` between two distributions of the same column (both numerical or both not)."""
    if a.numerical:
        p, q = _aligned_histograms(a, b) if a.total and b.total else (a.counts, b.counts)
        return jensen_shannon_divergence(_shares(p), _shares(q))
    p, q = _aligned_categories(a, b, rank_buckets)
    if metric == L_INFTY:
        return l_infinity_distance(p, q)
    return jensen_shannon_divergence(p, q)


# --------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class _Options:
    categorical_threshold: float
    categorical_metric: str
    numerical_threshold: float
    numerical_metric: str
    thresholds: dict[str, float]
    histogram_buckets: int
    rank_buckets: int

    def threshold(self, column: str, numerical: bool) -> float:
        if column in self.thresholds:
            return self.thresholds[column]
        return self.numerical_threshold if numerical else self.categorical_threshold

    def metric(self, numerical: bool) -> str:
        return self.numerical_metric if numerical else self.categorical_metric


def _threshold(function: str, name: str, value: Any) -> float:
    if value is None:
        return _DEFAULT_THRESHOLD
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise InvalidArgument(
            f"ML.{function} {name} must be in [0, 1), got {value!r}", parameter=name
        )
    return value


def _metric(function: str, name: str, value: Any, valid: tuple[str, ...]) -> str:
    if value is None:
        return valid[0]
    if value.upper() not in valid:
        raise InvalidArgument(
            f"ML.{function} {name} {value!r} is not valid; valid values: {', '.join(valid)}",
            parameter=name,
        )
    return str(value.upper())


def _per_column(function: str, value: Any, columns: Sequence[str]) -> dict[str, float]:
    """``[('col', 0.1), …]``: per-column thresholds, each naming one of ``columns``."""
    if value is None:
        return {}
    out: dict[str, float] = {}
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], bool)
            or not isinstance(item[1], int | float)
        ):
            raise InvalidArgument(
                f"ML.{function} thresholds must be an ARRAY<STRUCT<STRING, FLOAT64>> such as "
                f"[('column', 0.1)], got the element {item!r}",
                parameter="thresholds",
            )
        name, threshold = item
        if name not in columns:
            raise InvalidArgument(
                f"ML.{function} thresholds name the column {name!r}, which it does not "
                f"compare; its columns: {', '.join(columns)}",
                parameter="thresholds",
            )
        out[name] = _threshold(function, f"threshold of {name!r}", threshold)
    return out


def _options(
    function: str, params: dict[str, Any], columns: Sequence[str], *, buckets: bool
) -> _Options:
    """The checked parameters; ``buckets``: the histogram sizes are parameters (drift)."""
    sizes = {}
    for name, default, (low, high) in _BUCKET_PARAMS:
        value = params.get(name) if buckets else None
        if value is not None and not low <= value <= high:
            raise InvalidArgument(
                f"ML.{function} {name} must be between {low} and {high}, got {value}",
                parameter=name,
            )
        sizes[name] = default if value is None else int(value)
    return _Options(
        categorical_threshold=_threshold(
            function, "categorical_default_threshold", params.get("categorical_default_threshold")
        ),
        categorical_metric=_metric(
            function,
            "categorical_metric_type",
            params.get("categorical_metric_type"),
            _CATEGORICAL_METRICS,
        ),
        numerical_threshold=_threshold(
            function, "numerical_default_threshold", params.get("numerical_default_threshold")
        ),
        numerical_metric=_metric(
            function,
            "numerical_metric_type",
            params.get("numerical_metric_type"),
            _NUMERICAL_METRICS,
        ),
        thresholds=_per_column(function, params.get("thresholds"), columns),
        histogram_buckets=sizes["num_histogram_buckets"],
        rank_buckets=sizes["num_rank_histogram_buckets"],
    )


def validation_options(function: str, params: dict[str, Any], columns: Sequence[str]) -> _Options:
    """The checked threshold and metric parameters of ML.``function`` (its histogram sizes the
    defaults); ``thresholds`` may name only ``columns``. ML.TFDV_VALIDATE's arguments too."""
    return _options(function, params, columns, buckets=False)


# --------------------------------------------------------------------------------------------
# the functions


def _flatten_structs(table: pa.Table) -> pa.Table:
    """STRUCT columns as one column per field, ``<struct>_<field>`` (BigQuery ML's expansion,
    the names ML.FEATURE_INFO gives), unless the table already has a column of that name."""
    for name in list(table.column_names):
        col = table.column(name)
        if pa.types.is_struct(col.type):
            for i in range(col.type.num_fields):
                field = f"{name}_{col.type.field(i).name}"
                if field not in table.column_names:
                    table = table.append_column(field, pc.struct_field(col, [i]))
    return table


def _describe(
    col: pa.ChunkedArray, kind: str | None, numerical: bool, buckets: int
) -> Distribution:
    if kind is None:  # an all-NULL column of NULL type (SELECT NULL AS x)
        return Distribution.empty(numerical)
    if numerical:
        return _numerical(col, kind, buckets)
    return _categorical(col, kind)


def _kind(col: pa.ChunkedArray) -> str | None:
    """The column's preprocessing kind; None for a column of NULL type (SELECT NULL AS x)."""
    return None if pa.types.is_null(col.type) else feature_kind(col.type)


def _unsupported(col: pa.ChunkedArray) -> bool:
    return not pa.types.is_null(col.type) and feature_kind(col.type) is None


def _result(rows: list[tuple[str, str, float, float]]) -> pa.Table:
    """The output table from (input, metric, threshold, value) rows."""
    return pa.table(
        {
            "input": pa.array([r[0] for r in rows], pa.string()),
            "metric": pa.array([r[1] for r in rows], pa.string()),
            "threshold": pa.array([r[2] for r in rows], pa.float64()),
            "value": pa.array([r[3] for r in rows], pa.float64()),
            "is_anomaly": pa.array([r[3] > r[2] for r in rows], pa.bool_()),
        },
        schema=OUTPUT_SCHEMA,
    )


def ml_validate_data_drift(service: SqlService, call: DataCall) -> pa.Table:
    """ML.VALIDATE_DATA_DRIFT(base, study [, STRUCT(…)]): each column of both relations (the
    base's order), its distance between them, and whether it exceeds its threshold."""
    del service  # the relations are all it reads
    call.check_params(
        {**_COMMON_PARAMS, **{name: int for name, _, _ in _BUCKET_PARAMS}},
    )
    base, study = (_flatten_structs(t) for t in call.require_inputs("base", "study"))
    compared: list[tuple[str, bool, str | None, str | None]] = []
    for name in base.column_names:
        if name not in study.column_names:
            continue  # in one relation only: nothing to compare it with
        cols = (base.column(name), study.column(name))
        if any(_unsupported(c) for c in cols):
            continue  # a type with no distribution (ARRAY of numbers, nested STRUCT)
        kind_a, kind_b = (_kind(c) for c in cols)
        if kind_a is not None and kind_b is not None and kind_a != kind_b:
            raise InvalidArgument(
                f"ML.VALIDATE_DATA_DRIFT cannot compare column {name!r}: it is {cols[0].type} "
                f"in the base relation and {cols[1].type} in the study relation; cast one side "
                "to the other's type",
                column=name,
            )
        kind = kind_a or kind_b  # None: NULL-typed on both sides, nothing to compare
        compared.append((name, kind in _NUMERICAL_KINDS, kind_a, kind_b))
    options = _options(
        call.function,
        call.params,
        sorted(set(base.column_names) | set(study.column_names)),
        buckets=True,
    )
    rows = []
    for name, numerical, kind_a, kind_b in compared:
        a = _describe(base.column(name), kind_a, numerical, options.histogram_buckets)
        b = _describe(study.column(name), kind_b, numerical, options.histogram_buckets)
        metric = options.metric(numerical)
        value = distance(a, b, metric, options.rank_buckets)
        rows.append((name, metric, options.threshold(name, numerical), value))
    return _result(rows)


def _training(row: dict[str, Any]) -> Distribution:
    """A column's stored training distribution (``training_distribution``'s form)."""
    stored = row["distribution"]
    if stored["kind"] in _NUMERICAL_KINDS:
        return Distribution.histogram(float(row["min"]), float(row["max"]), stored["histogram"])
    return Distribution(
        False, np.asarray(stored["counts"], dtype=np.float64), values=list(stored["values"])
    )


def ml_validate_data_skew(service: SqlService, call: MLCall) -> pa.Table:
    """ML.VALIDATE_DATA_SKEW(MODEL m, serving [, STRUCT(…)]): each model feature in the serving
    data, its distance from the training data, and whether it exceeds its threshold."""
    call.check_params({**_COMMON_PARAMS, "enable_visualization_link": bool})
    if call.params.get("enable_visualization_link"):
        raise InvalidArgument(
            "ML.VALIDATE_DATA_SKEW enable_visualization_link=TRUE links to Vertex AI model "
            "monitoring, which Shipyard does not have; leave it FALSE (the default)",
            parameter="enable_visualization_link",
        )
    serving = _flatten_structs(call.require_input())
    manifest = service.models.manifest(call.model)
    info = [row for row in manifest.feature_info if row.get("input")]
    features = [str(row["input"]) for row in info]
    if manifest.model_type in _NO_SKEW or not info:
        raise InvalidArgument(
            f"ML.VALIDATE_DATA_SKEW does not apply to model {call.model} of type "
            f"{manifest.model_type}: it has no input features to serve; it applies to "
            "models trained on feature columns (LINEAR_REG, LOGISTIC_REG, BOOSTED_TREE_*, "
            "RANDOM_FOREST_*, DNN_*, KMEANS, PCA, AUTOENCODER)",
            model_type=manifest.model_type,
        )
    if any(row.get("distribution") is None for row in info):
        raise FailedPrecondition(
            f"model {call.model} was trained before Shipyard stored training distributions "
            "with its models, so ML.VALIDATE_DATA_SKEW has no baseline; retrain it "
            f"(CREATE OR REPLACE MODEL {call.model} …) to validate serving data against it",
            model=call.model,
        )
    present = [row for row in info if row["input"] in serving.column_names]
    if not present:
        raise InvalidArgument(
            f"the serving data has none of model {call.model}'s feature columns "
            f"({', '.join(features)}); its columns: {', '.join(serving.column_names)}",
            expected=features,
        )
    options = _options(call.function, call.params, features, buckets=False)
    rows = []
    for row in present:
        name = str(row["input"])
        trained = row["distribution"]["kind"]
        numerical = trained in _NUMERICAL_KINDS
        col = serving.column(name)
        kind = _kind(col)
        if kind is not None and kind != trained:
            raise InvalidArgument(
                f"serving column {name!r} has type {col.type}, but model {call.model} was "
                f"trained on a {trained} column",
                column=name,
                type=str(col.type),
            )
        a = _training(row)
        b = _describe(col, kind, numerical, HISTOGRAM_BUCKETS)
        metric = options.metric(numerical)
        value = distance(a, b, metric, options.rank_buckets)
        rows.append((name, metric, options.threshold(name, numerical), value))
    return _result(rows)
