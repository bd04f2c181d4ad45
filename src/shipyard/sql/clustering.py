"""KMEANS: training with scikit-learn, and its ML functions (EVALUATE, CENTROIDS, DETECT_ANOMALIES).

Training follows BigQuery ML's k-means options:

* Features: every column of the training query but ``kmeans_init_col``; numeric columns are
  standardized when ``standardize_features`` (default TRUE), categorical ones one-hot encoded.
* ``num_clusters`` (2..100): when omitted, ``max(2, round(log10(rows)))`` (BigQuery ML only says
  it picks a default from the number of training rows).
* ``kmeans_init_method``: RANDOM (default; ``num_clusters`` distinct training rows, seeded),
  KMEANS++ (scikit-learn's ``kmeans_plusplus``), CUSTOM (the rows whose BOOL
  ``kmeans_init_col`` is TRUE; their count must equal ``num_clusters`` when it is given).
* Lloyd iterations with scikit-learn's Lloyd step (the one ``KMeans.fit`` runs; every
  iteration is an ML.TRAINING_INFO row): at most ``max_iterations``; with ``early_stop`` the
  training stops after the first iteration whose relative improvement of the mean squared
  distance is below ``min_rel_progress``; it always stops when the centroids stop moving.
* ``warm_start=TRUE`` starts from the current version's centroids (carried over to the new
  data's standardization; categories it never saw start at 0) instead of
  ``kmeans_init_method``; the input columns must be the same.
* ``distance_type`` COSINE clusters the L2-normalised rows (spherical k-means) and reports
  BigQuery ML's cosine distance ``sqrt(1 - cosine similarity)``; EUCLIDEAN reports the Euclidean
  distance.

ML functions:

* ML.PREDICT (the Predictor): ``CENTROID_ID`` (INT64, 1-based) and
  ``NEAREST_CENTROIDS_DISTANCE`` (ARRAY<STRUCT<CENTROID_ID INT64, DISTANCE FLOAT64>>, the nearest
  min(num_clusters, 5) centroids, nearest first), then the input columns.
* ML.EVALUATE: ``davies_bouldin_index`` and ``mean_squared_distance`` (computed in the
  preprocessed feature space).
* ML.CENTROIDS: one row per (centroid, input column): ``centroid_id``, ``feature``,
  ``numerical_value`` (numeric columns) and ``categorical_value``
  (ARRAY<STRUCT<category STRING, value FLOAT64>>, one entry per category). Values are in the
  input's own units unless ``STRUCT(TRUE AS standardize)``.
* ML.DETECT_ANOMALIES(MODEL m, STRUCT(c AS contamination), TABLE t): a row's distance to each
  centroid is divided by that cluster's root-mean-square training distance;
  ``normalized_distance`` is the smallest of these and ``centroid_id`` its centroid. A row is an
  anomaly when its normalized distance is above the ``1 - contamination`` quantile of the
  training rows' normalized distances (BigQuery ML does not publish its normalisation).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument
from shipyard.registry.clustering_output import distances_with_nearest, own_products
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql.evaluation import linear_quantiles, sorted_quantiles
from shipyard.sql.training import Progress, UnsupervisedFit, check_warm_start, one_blas_thread

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "KMEANS_METRICS",
    "default_num_clusters",
    "ml_centroids",
    "ml_detect_anomalies",
    "require_model_type",
    "train_kmeans",
]

KMEANS_METRICS: tuple[str, ...] = ("davies_bouldin_index", "mean_squared_distance")
_SEED = 20240101
#: Training normalized distances are kept as this many quantiles (for any contamination).
_QUANTILES = 1001
_BLOCK_ROWS = 8192  # rows per block of the per-cluster distance sums (ML.TRAINING_INFO)
#: An iteration's loss is the sum of its cluster sums while the rows' summed squared norms are
#: at most this many times it; beyond, the sums' cancellation costs precision (see _lloyd).
_LOSS_FROM_SUMS_RATIO = 8.0


def default_num_clusters(rows: int) -> int:
    """The number of clusters when ``num_clusters`` is omitted."""
    return int(min(100, max(2, round(math.log10(max(rows, 1))))))


def require_model_type(
    service: SqlService, call: MLCall, valid: tuple[str, ...], *, also: tuple[str, ...] = ()
) -> str:
    """The model's type, or InvalidArgument naming the function, the type and the valid ones
    (``also``: types other handlers of the same function take before this one is asked)."""
    model_type = service.models.get_version(call.model).model_type
    if model_type not in valid:
        raise InvalidArgument(
            f"ML.{call.function} does not apply to model {call.model}, a {model_type} model; "
            f"it applies to {', '.join(sorted((*valid, *also)))} models",
            model_type=model_type,
        )
    return model_type


# --------------------------------------------------------------------------------------------
# training


def _init_rows(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise InvalidArgument(
            f"kmeans_init_col {name!r} is not in the training data; its columns are: "
            f"{list(table.column_names)}",
            column=name,
        )
    col = table.column(name)
    if not pa.types.is_boolean(col.type):
        raise InvalidArgument(
            f"kmeans_init_col {name!r} has type {col.type}; it must be BOOL (TRUE marks the "
            "rows that are the initial centroids)",
            column=name,
        )
    return np.flatnonzero(np.asarray(pc.fill_null(col, False).to_numpy(zero_copy_only=False)))


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)  # type: ignore[no-any-return]


def _cluster_info(sizes: np.ndarray, squared: np.ndarray) -> list[dict[str, Any]]:
    """ML.TRAINING_INFO's ``cluster_info`` of one iteration, in the space the model is fitted in
    (standardized features): per centroid its size and radius, the root mean square distance of
    its rows to it (the radius ML.DETECT_ANOMALIES divides by). ``squared``: per centroid, the
    sum of its rows' squared distances to it."""
    return [
        {
            "centroid_id": c + 1,
            "cluster_radius": float(math.sqrt(squared[c] / sizes[c])) if sizes[c] else None,
            "cluster_size": int(sizes[c]),
        }
        for c in range(len(sizes))
    ]


def _cluster_sums(
    x: np.ndarray,
    norms: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    means: np.ndarray,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows per centroid, their summed squared distances to it) for ``labels``.

    ``means`` and ``counts`` are the Lloyd step's update from these labels (the mean of each
    centroid's rows, and how many), ``norms`` the rows' squared norms: the sums then come from
    ``sum |x|² - 2 c·sum x + n |c|²`` per centroid, in O(rows) instead of a pass that builds every
    row's offset (which doubled the time of an iteration). Exact to ~1e-12 relative on
    standardized data. When the step moved a row into an empty cluster (scikit-learn's
    relocation), its counts no longer match the labels: the sums are then taken row by row.
    A relocation leaves a centroid with a count but no labelled row, hence a norm sum of
    exactly 0, so that test (or counts not summing to the rows) stands in for counting the
    labels; a cluster whose rows all have norm 0 takes the row-by-row sums too.
    """
    k = len(centers)
    norm_sums = np.bincount(labels, weights=norms, minlength=k)
    if float(np.sum(counts)) == len(labels) and not np.any((norm_sums == 0.0) & (counts > 0)):
        sizes = counts.astype(np.int64)
        sums = (
            norm_sums
            - 2.0 * np.einsum("ij,ij->i", centers, means * counts[:, None])
            + sizes * np.einsum("ij,ij->i", centers, centers)
        )
        return sizes, np.maximum(sums, 0.0)
    sizes = np.bincount(labels, minlength=k)
    sums = np.zeros(k)
    for lo in range(0, len(x), _BLOCK_ROWS):
        block = labels[lo : lo + _BLOCK_ROWS]
        offset = x[lo : lo + _BLOCK_ROWS] - np.take(centers, block, axis=0)
        sums += np.bincount(block, weights=np.einsum("ij,ij->i", offset, offset), minlength=k)
    return sizes, sums


def train_kmeans(
    table: pa.Table, options: Any, report: Progress, warm_start: Predictor | None = None
) -> UnsupervisedFit:
    from sklearn.cluster import kmeans_plusplus

    n = table.num_rows
    if n == 0:
        raise InvalidArgument("the training data has no rows; nothing to cluster")
    init_col = options.kmeans_init_col
    init_rows = _init_rows(table, init_col) if init_col else None
    features = [c for c in table.column_names if c != init_col]
    preprocessor = FeaturePreprocessor.fit(
        table, features, standardize=options.standardize_features, categorical_encoding="one_hot"
    )
    x = preprocessor.transform(table, dtype=np.float64)
    cosine = options.distance_type == "COSINE"
    x_fit = _normalise_rows(x) if cosine else x
    k = options.num_clusters
    if init_rows is not None:
        if k is None:
            k = len(init_rows)
        if len(init_rows) != k or k < 2:
            raise InvalidArgument(
                f"kmeans_init_col {init_col!r} is TRUE in {len(init_rows)} row(s); it must be "
                f"TRUE in exactly num_clusters ({k}) rows, at least 2",
                column=init_col,
            )
    if k is None:
        k = default_num_clusters(n)
    if k > n:
        raise InvalidArgument(
            f"num_clusters {k} needs at least {k} training rows; the training data has {n}",
            num_clusters=k,
        )
    method = options.kmeans_init_method
    x_norms: np.ndarray | None = None
    if warm_start is not None:
        check_warm_start("KMEANS", warm_start, table, features)
        current = np.asarray(warm_start.model.cluster_centers_, dtype=np.float64)
        if options.num_clusters is not None and options.num_clusters != len(current):
            raise InvalidArgument(
                f"warm_start=TRUE continues from the current {len(current)} centroids; "
                f"num_clusters {options.num_clusters} differs (drop it or retrain from scratch)",
                num_clusters=options.num_clusters,
            )
        k = len(current)
        if k > n:
            raise InvalidArgument(
                f"num_clusters {k} needs at least {k} training rows; the training data has {n}"
            )
        centers = _carry_centers(warm_start.preprocessor, current, preprocessor)
        if cosine:
            centers = _normalise_rows(centers)
    elif init_rows is not None:
        centers = x_fit[init_rows].copy()
    elif method == "KMEANS++":
        # kmeans_plusplus's own row norms (the same einsum), shared with the metrics below
        x_norms = np.einsum("ij,ij->i", x_fit, x_fit)
        centers, _ = kmeans_plusplus(x_fit, k, random_state=_SEED, x_squared_norms=x_norms)
    else:
        rng = np.random.default_rng(_SEED)
        centers = x_fit[rng.choice(n, size=k, replace=False)].copy()

    model, rows, update = _lloyd_steps(
        x_fit, np.asarray(centers, dtype=np.float64), options, report
    )

    config: dict[str, Any] = {
        "matrix_dtype": "float64",
        "model_type": "KMEANS",
        "distance_type": options.distance_type,
        "num_clusters": k,
    }
    with one_blas_thread():  # (rows x features) @ (features x clusters): thin products
        # EUCLIDEAN: the distances and Davies-Bouldin share the rows' squared norms
        norms = None
        if not cosine:
            norms = np.einsum("ij,ij->i", x, x) if x_norms is None else x_norms
        # Predictor.centroid_distances, with each row's nearest centroid found in the same
        # blocks (_assignments' values: argmin's first of equal distances)
        distances, labels, nearest = distances_with_nearest(
            x, model.cluster_centers_, cosine, norms
        )
        assigned = (labels, nearest)  # for the metrics and the anomaly statistics
        # The last Lloyd step's update is the mean of each cluster's rows: Davies-Bouldin's
        # centroids, when its assignment is this one (it can differ on a near tie).
        means = None
        if update is not None and np.array_equal(assigned[0], model.labels_):
            means = update[0]
        metrics = kmeans_metrics(x_fit, distances, assigned, cluster_means=means, norms=norms)
    config.update(anomaly_statistics(distances, assigned))
    # A label per training row is no part of the model (predict and transform never read it),
    # and the package would carry it: 1.2 MB of its 1.25 MB at 300k rows.
    if hasattr(model, "labels_"):
        del model.labels_
    return UnsupervisedFit(
        task="clustering",
        model=model,
        preprocessor=preprocessor,
        features=features,
        training_info=rows,
        metrics=metrics,
        predictor_config=config,
    )


def _lloyd(
    x_fit: np.ndarray, init: np.ndarray, options: Any, report: Progress
) -> tuple[Any, list[dict[str, Any]]]:
    """Lloyd iterations from ``init``: the fitted ``KMeans`` and one ML.TRAINING_INFO row each
    (:func:`_lloyd_steps` without its last update)."""
    model, rows, _ = _lloyd_steps(x_fit, init, options, report)
    return model, rows


def _lloyd_steps(
    x_fit: np.ndarray, init: np.ndarray, options: Any, report: Progress
) -> tuple[Any, list[dict[str, Any]], tuple[np.ndarray, np.ndarray] | None]:
    """Lloyd iterations from ``init``: the fitted ``KMeans``, one ML.TRAINING_INFO row each, and
    the last step's update: (the mean of each centroid's rows in ``x_fit``'s space, how many),
    None when that step relocated a row into an empty cluster (then these are no such means).

    scikit-learn's own Lloyd step (``lloyd_iter_chunked_dense``, what ``KMeans.fit`` runs for
    each iteration) on the data centred once, as ``KMeans.fit`` centres it, so the clustering
    is scikit-learn's from the same initial centroids. An iteration's loss is the mean squared
    distance to the centroids it produced: the next step's assignment gives it; its cluster
    sizes and radii come from that step's update (:func:`_cluster_sums`), and so does the loss,
    the sum of the cluster sums, while those are well conditioned: the rows' squared norms
    summed at most ``_LOSS_FROM_SUMS_RATIO`` times the loss (a relative error within ~1e-14,
    as an ``_inertia_dense`` pass's own); otherwise (clusters far from the rows' mean compared
    with their spread) that pass over the rows gives it. One ``KMeans(max_iter=1).fit`` per
    iteration cost six times a 20-iteration fit (300k x 20, k 8): each fit copied and centred
    X again, computed the row norms and ran a second assignment pass.
    """
    from sklearn.cluster import KMeans
    from sklearn.cluster._k_means_common import _inertia_dense
    from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    n, k = len(x_fit), len(init)
    mean = x_fit.mean(axis=0)
    xc = np.ascontiguousarray(x_fit - mean)  # KMeans.fit: "subtract of mean of x for accuracy"
    weights = np.ones(n, dtype=np.float64)
    centers = np.ascontiguousarray(init - mean)
    centers_new = np.zeros_like(centers)
    in_cluster = np.zeros(k, dtype=np.float64)
    shift = np.zeros(k, dtype=np.float64)
    labels = np.full(n, -1, dtype=np.int32)
    norms = np.einsum("ij,ij->i", xc, xc)  # for ML.TRAINING_INFO's cluster radii and loss
    limit = float(np.sum(norms)) / _LOSS_FROM_SUMS_RATIO
    threads = _openmp_effective_n_threads()
    rows: list[dict[str, Any]] = []
    iterations = options.max_iterations
    previous: float | None = None
    inertia = 0.0
    # As KMeans.fit: the chunked distance products run one BLAS thread inside each OpenMP one.
    with one_blas_thread():
        start = time.perf_counter()
        # Iteration 0's step: assign to the initial centroids, move the centroids.
        lloyd_iter_chunked_dense(
            xc, weights, centers, centers_new, in_cluster, labels, shift, threads
        )
        for iteration in range(iterations):
            centers, centers_new = centers_new, centers  # centers: this iteration's result
            moved = _moved(centers, centers_new)
            # The assignment to this iteration's centroids gives its loss and cluster sizes;
            # it is also the next iteration's step (after the last one, only its update is
            # used: the cluster radii).
            lloyd_iter_chunked_dense(
                xc, weights, centers, centers_new, in_cluster, labels, shift, threads
            )
            sizes, squared = _cluster_sums(xc, norms, labels, centers, centers_new, in_cluster)
            inertia = float(np.sum(squared))
            if not inertia >= limit:  # ill-conditioned sums (or NaN): the rows' own pass
                inertia = float(_inertia_dense(xc, weights, centers, labels, threads))
            loss = inertia / n
            now = time.perf_counter()
            rows.append(
                {
                    "training_run": 0,
                    "iteration": iteration,
                    "loss": loss,
                    "eval_loss": None,
                    "learning_rate": None,
                    "duration_ms": round((now - start) * 1000),
                    # BigQuery ML's k-means column: per centroid, size and RMS distance
                    "cluster_info": _cluster_info(sizes, squared),
                }
            )
            start = now
            report((iteration + 1) / iterations, f"iteration {iteration + 1}: {loss:.6g}")
            if not moved:
                break
            if (
                options.early_stop
                and previous is not None
                and previous > 0
                and (previous - loss) / previous < options.min_rel_progress
            ):
                break
            previous = loss
        # KMeans.fit's inertia_: the direct sum over the rows, as it computes it
        inertia = float(_inertia_dense(xc, weights, centers, labels, threads))
    model = KMeans(
        n_clusters=k,
        init=np.asarray(init, dtype=np.float64),
        n_init=1,
        max_iter=len(rows),
        tol=0.0,
        random_state=_SEED,
        algorithm="lloyd",
    )
    # The attributes KMeans.fit sets (predict, transform and score read them).
    model.cluster_centers_ = centers + mean
    model.labels_ = labels.copy()
    model.inertia_ = inertia
    model.n_iter_ = len(rows)
    model.n_features_in_ = x_fit.shape[1]
    model._n_features_out = k
    model._n_threads = threads
    update = None
    if np.array_equal(np.bincount(labels, minlength=k), in_cluster):  # no relocation
        update = (centers_new + mean, in_cluster)
    return model, rows, update


def _moved(centers: np.ndarray, previous: np.ndarray) -> bool:
    """``not np.allclose(centers, previous, rtol=0, atol=1e-12)``: whether a centroid moved.
    Its test on finite values, without allclose's ~0.2 ms of temporaries and error-state
    contexts per iteration; a NaN or infinite centroid takes allclose itself."""
    if not (np.isfinite(centers).all() and np.isfinite(previous).all()):
        return not np.allclose(centers, previous, rtol=0.0, atol=1e-12)
    return not bool((np.abs(centers - previous) <= 1e-12).all())


def _assignments(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each row's nearest centroid, its distance to it): the first of equal distances."""
    labels = np.argmin(distances, axis=1)
    return labels, distances[np.arange(len(distances)), labels]


def kmeans_metrics(
    x_fit: np.ndarray,
    distances: np.ndarray,
    assigned: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    cluster_means: np.ndarray | None = None,
    norms: np.ndarray | None = None,
) -> dict[str, float | None]:
    """ML.EVALUATE for KMEANS on rows (their fitted-space matrix and centroid distances).

    ``assigned``: :func:`_assignments` of ``distances``, when the caller has it;
    ``cluster_means`` and ``norms``: see :func:`_davies_bouldin`.
    """
    if len(distances) == 0:
        return dict.fromkeys(KMEANS_METRICS)
    labels, nearest = assigned if assigned is not None else _assignments(distances)
    dbi: float | None = None
    if 1 < np.count_nonzero(np.bincount(labels)) < len(labels):
        dbi = _davies_bouldin(
            x_fit, labels, distances.shape[1], cluster_means=cluster_means, norms=norms
        )
    return {"davies_bouldin_index": dbi, "mean_squared_distance": float(np.mean(nearest**2))}


def _davies_bouldin(
    x: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    cluster_means: np.ndarray | None = None,
    norms: np.ndarray | None = None,
) -> float:
    """scikit-learn's ``davies_bouldin_score`` (equal to float rounding), without its copy of
    every cluster's rows and its label encoding: one product with the cluster indicators gives
    the centroids, one with the centroids each row's distance to its own (scikit-learn's
    ``euclidean_distances`` expansion). 300k x 20 rows, 8 clusters: ~4x faster.

    ``cluster_means``: (k, features), the mean of each cluster's rows under ``labels``, when
    the caller has them (the last Lloyd step's update; equal to the indicator product's to
    float rounding): no indicator product then. ``norms``: the rows' squared norms."""
    from sklearn.metrics import pairwise_distances

    n = len(x)
    counts = np.bincount(labels, minlength=k)
    present = np.flatnonzero(counts)  # scikit-learn counts only the clusters that have rows
    if len(present) == k:
        own = labels
    else:
        position = np.zeros(k, dtype=np.int64)
        position[present] = np.arange(len(present))
        own = position[labels]
    if cluster_means is not None:
        centroids = np.ascontiguousarray(cluster_means[present], dtype=np.float64)
    else:
        indicator = np.zeros((n, len(present)))
        indicator[np.arange(n), own] = 1.0
        centroids = (indicator.T @ x) / counts[present][:, None]
        del indicator
    # each row's product with its own centroid: (x @ centroids.T)[arange, own], a block of
    # rows at a time
    squared = -2.0 * own_products(x, centroids, own)
    squared += np.einsum("ij,ij->i", x, x) if norms is None else norms
    squared += np.einsum("ij,ij->i", centroids, centroids)[own]
    intra = np.bincount(own, weights=np.sqrt(np.maximum(squared, 0.0))) / counts[present]
    between = pairwise_distances(centroids)
    if np.allclose(intra, 0.0) or np.allclose(between, 0.0):
        return 0.0
    between[between == 0] = np.inf
    return float(np.mean(np.max((intra[:, None] + intra) / between, axis=1)))


def anomaly_statistics(
    distances: np.ndarray, assigned: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, Any]:
    """Per-cluster distance scales and the training normalized distances' quantiles.

    ``assigned``: :func:`_assignments` of ``distances``, when the caller has it.
    """
    labels, nearest = assigned if assigned is not None else _assignments(distances)
    k = distances.shape[1]
    counts = np.bincount(labels, minlength=k)
    squared = np.bincount(labels, weights=nearest * nearest, minlength=k)
    scales = []
    for j in range(k):
        rms = float(np.sqrt(squared[j] / counts[j])) if counts[j] else 0.0
        scales.append(rms if rms > 0 else 1.0)
    normalized = _scaled_minimum(distances, scales)
    quantiles = training_quantiles(normalized)
    return {"distance_scales": scales, "anomaly_quantiles": [float(q) for q in quantiles]}


def training_quantiles(values: np.ndarray, count: int = _QUANTILES) -> np.ndarray:
    """``np.quantile(values, np.linspace(0, 1, count))`` bit for bit, without a full sort.

    ``np.quantile`` reads ~2 x ``count`` order statistics, which it selects with a multi-pivot
    partition that costs more than a full sort (18 ms against 14 ms at 300k rows).
    :func:`_order_statistics` selects the same values in ~2.5 ms, and they are interpolated as
    NumPy does (:func:`~shipyard.sql.evaluation.linear_quantiles`). Below
    :data:`_SELECT_FROM` float64 values, on tie-heavy values (:func:`_tie_heavy`) and where the
    selection declines (negative values, ``-0.0``, NaN), one sort gives the order statistics
    (:func:`~shipyard.sql.evaluation.sorted_quantiles`), and where that declines too (NaN,
    zeros of both signs) ``np.quantile`` itself runs.
    tests/sql/test_training_quantiles.py pins the equality.
    """
    values = np.asarray(values)
    n = len(values)
    if n >= _SELECT_FROM and values.dtype == np.float64 and not _tie_heavy(values):
        ranks = _quantile_ranks(n, count)
        chosen = _order_statistics(values, ranks)
        if chosen is not None:
            return linear_quantiles(n, lambda at: chosen[np.searchsorted(ranks, at % n)], count)
    result = sorted_quantiles(np.sort(values), count)
    if result is None:
        return np.quantile(values, np.linspace(0.0, 1.0, count))  # type: ignore[no-any-return]
    return result


#: Below this many values one sort is about as fast as the selection (its tables cost ~0.5 ms).
_SELECT_FROM = 1 << 15
#: Buckets per pass of :func:`_order_statistics`: a 512 KB count table (L2 holds it).
_BUCKET_BITS = 16
#: :func:`_order_statistics` sorts what is left once this few values remain (0.05 ms).
_SORT_AT_MOST = 1 << 12
#: Values sampled by :func:`_tie_heavy`.
_TIE_SAMPLE = 1 << 10
_INFINITY_BITS = int(np.array(np.inf).view(np.int64))


def _tie_heavy(values: np.ndarray) -> bool:
    """Whether the non-zero values of a strided sample of :data:`_TIE_SAMPLE` repeat over 1/16
    of them. A value repeated thousands of times keeps its bucket in every pass of
    :func:`_order_statistics`, which then ends in a sort of most values (50 distinct values in
    300k: 20 ms), while ties make one sort faster (7 ms). Zeros it sets aside first."""
    sample = values[:: len(values) // _TIE_SAMPLE][:_TIE_SAMPLE]
    sample = sample[sample != 0.0]
    return 16 * len(np.unique(sample)) < 15 * len(sample)


def _quantile_ranks(n: int, count: int) -> np.ndarray:
    """The (sorted, distinct) ranks of the order statistics NumPy's linear quantiles at
    ``np.linspace(0, 1, count)`` of ``n`` values may read: each virtual index's floor and the
    next one, capped at the last (``linear_quantiles`` reads the last as index -1)."""
    below = np.floor((n - 1) * np.linspace(0.0, 1.0, count)).astype(np.intp)
    return np.unique(np.concatenate([below, np.minimum(below + 1, n - 1)]))


def _order_statistics(values: np.ndarray, ranks: np.ndarray) -> np.ndarray | None:
    """``np.sort(values)[ranks]`` for sorted, distinct ``ranks``, without sorting ``values``;
    None where the values' bit patterns do not order them (a negative value, ``-0.0``, NaN).

    A radix selection. The IEEE bit pattern of a non-negative float, read as an integer, grows
    with the value, so counting the values per bucket of their high bits (``np.bincount``)
    tells which buckets hold the wanted ranks; only those buckets' values are kept, and the next
    pass counts them by their next bits. Once few are left they are sorted (300k
    reconstruction errors: ~22,000 kept, then ~2,600: 2.5 ms in all, where ``np.sort`` takes
    14 ms); once a pass has read all the bits, each bucket is one value, read off its bits. A
    pass that keeps most of its values is stuck on ties: what is left is sorted. The first pass
    is exempt: its buckets span the whole range, which one far outlier (1e300) may stretch.
    """
    bits = values.view(np.int64)
    low, high = int(bits.min()), int(bits.max())
    if low < 0 or high > _INFINITY_BITS:
        return None
    if low == 0 < high:
        # Zeros (bits 0) stretch the range ~1,000 binades below the other values: the first
        # pass's buckets would be too coarse to keep few values. Select among the others.
        positive = values[bits > 0]
        zeros = len(values) - len(positive)
        found = np.zeros(len(ranks))
        above = ranks >= zeros
        if above.any():
            found[above] = _order_statistics(positive, ranks[above] - zeros)  # never None
        return found
    width = (high - low).bit_length()
    digits = min(width, _BUCKET_BITS)  # bits a pass reads
    shift = width - digits  # bits below them
    keys = bits - low
    np.right_shift(keys, shift, out=keys)  # each value's bucket
    # A pass's bucket k holds the values whose (bits - low) >> shift is
    # (prefixes[k >> digits] << digits) | (k & (2**digits - 1)): the bits read so far.
    prefixes = np.zeros(1, dtype=np.int64)
    part, first = values, True
    while True:
        counts = np.bincount(keys, minlength=len(prefixes) << digits)
        ends = np.cumsum(counts)  # rank after each bucket
        home = np.searchsorted(ends, ranks, side="right")  # each rank's bucket
        wanted = np.zeros(len(counts), dtype=bool)
        wanted[home] = True
        kept = np.where(wanted, counts, 0)
        ranks = ranks - (ends - np.cumsum(kept))[home]  # the ranks among the kept values
        chosen = np.flatnonzero(wanted)
        prefixes = (prefixes[chosen >> digits] << digits) | (chosen & ((1 << digits) - 1))
        if shift == 0:  # all bits read: each bucket holds one value
            return (prefixes[np.searchsorted(chosen, home)] + low).view(np.float64)
        rows = np.flatnonzero(wanted[keys])
        stalled = not first and 4 * len(rows) > 3 * len(part)
        part = part[rows]
        if len(part) <= _SORT_AT_MOST or stalled:
            part.sort()
            return part[ranks]  # type: ignore[no-any-return]
        # the next pass: bucket (slot of the value's bucket among ``chosen``, next bits)
        slots = np.cumsum(wanted) - 1
        digits = min(shift, max(1, _BUCKET_BITS - len(chosen).bit_length()))
        shift -= digits
        next_bits = part.view(np.int64) - low
        np.right_shift(next_bits, shift, out=next_bits)
        np.bitwise_and(next_bits, (1 << digits) - 1, out=next_bits)
        keys = slots[keys[rows]]
        np.left_shift(keys, digits, out=keys)
        keys |= next_bits
        first = False


def _scaled_minimum(distances: np.ndarray, scales: list[float]) -> np.ndarray:
    """Each row's smallest ``distance / scale``: the row minimum of the scaled matrix, taken
    column by column (NumPy's minimum over rows of a few values costs ~4x more), a block of
    rows at a time (the block's columns stay in cache: ~2x faster than whole columns). A
    minimum is exact, so any order gives the same value, unless a row's minimum is a zero (0.0
    and -0.0 compare equal; which one a reduction keeps depends on its order) or NaN: then the
    row minimum of the scaled matrix decides, as before."""
    n, k = distances.shape
    out = np.empty(n)
    scaled = np.empty(min(n, _BLOCK_ROWS))
    for lo in range(0, n, _BLOCK_ROWS):
        part = distances[lo : lo + _BLOCK_ROWS]
        low, column = out[lo : lo + _BLOCK_ROWS], scaled[: len(part)]
        np.divide(part[:, 0], scales[0], out=low)
        for j in range(1, k):
            np.divide(part[:, j], scales[j], out=column)
            np.minimum(low, column, out=low)
    if not (out > 0.0).all():
        return np.min(distances / np.asarray(scales)[None, :], axis=1)  # type: ignore[no-any-return]
    return out


def anomaly_threshold(config: dict[str, Any], contamination: float) -> float:
    """The training quantile at ``1 - contamination``."""
    quantiles = np.asarray(config["anomaly_quantiles"], dtype=np.float64)
    return float(np.interp(1.0 - contamination, np.linspace(0.0, 1.0, len(quantiles)), quantiles))


# --------------------------------------------------------------------------------------------
# ML functions


def evaluate_kmeans_rows(predictor: Predictor, rows: pa.Table) -> dict[str, float | None]:
    matrix = predictor.preprocessor.transform(rows, dtype=np.float64)
    distances = predictor.centroid_distances(matrix)
    cosine = predictor.config.get("distance_type") == "COSINE"
    return kmeans_metrics(_normalise_rows(matrix) if cosine else matrix, distances)


def ml_centroids(service: SqlService, call: MLCall) -> pa.Table:
    """ML.CENTROIDS: one row per centroid and input column."""
    call.check_params({"standardize": bool})
    require_model_type(service, call, ("KMEANS",))
    if call.input is not None:
        raise InvalidArgument(
            f"ML.CENTROIDS takes no input rows: ML.CENTROIDS(MODEL {call.model}"
            "[, STRUCT(TRUE AS standardize)])"
        )
    predictor = service.models.load(call.model)
    centers = np.asarray(predictor.model.cluster_centers_, dtype=np.float64)
    out = feature_rows(
        predictor.preprocessor,
        centers,
        id_name="centroid_id",
        ids=list(range(1, len(centers) + 1)),
        unscale=not bool(call.params.get("standardize") or False),
    )
    # BigQuery ML's last column, set for GEOGRAPHY features only: Shipyard has none (NULL).
    return out.append_column("geography_value", pa.nulls(out.num_rows, pa.string()))


def feature_rows(
    preprocessor: FeaturePreprocessor,
    vectors: np.ndarray,
    *,
    id_name: str,
    ids: list[int],
    unscale: bool,
) -> pa.Table:
    """Vectors in the preprocessed space as rows per (id, input column): ML.CENTROIDS and
    ML.PRINCIPAL_COMPONENTS. ``unscale`` maps numeric values back to the input's units."""
    layout = _column_layout(preprocessor)
    out_ids: list[int] = []
    names: list[str] = []
    numeric: list[float | None] = []
    categorical: list[list[dict[str, Any]]] = []
    for vid, vector in zip(ids, vectors, strict=True):
        for col, offset, labels in layout:
            out_ids.append(vid)
            names.append(col["name"])
            if labels is None:
                value = float(vector[offset])
                if unscale:
                    value = value * float(col["scale"]) + float(col["center"])
                numeric.append(value)
                categorical.append([])
                continue
            numeric.append(None)
            categorical.append(
                [
                    {"category": label, "value": float(vector[offset + i])}
                    for i, label in enumerate(labels)
                ]
            )
    entry = pa.struct([("category", pa.string()), ("value", pa.float64())])
    return pa.table(
        {
            id_name: pa.array(out_ids, type=pa.int64()),
            "feature": pa.array(names, type=pa.string()),
            "numerical_value": pa.array(numeric, type=pa.float64()),
            "categorical_value": pa.array(categorical, type=pa.list_(entry)),
        }
    )


def _column_layout(
    preprocessor: FeaturePreprocessor,
) -> list[tuple[dict[str, Any], int, list[str] | None]]:
    """(column description, first matrix column, category labels or None for numbers)."""
    layout: list[tuple[dict[str, Any], int, list[str] | None]] = []
    offset = 0
    for col in preprocessor.to_dict()["columns"]:
        if col["kind"] in ("numeric", "timestamp") or col["encoding"] == "label":
            layout.append((col, offset, None if col["kind"] in ("numeric", "timestamp") else []))
            offset += 1
            continue
        labels = [_category_text(v) for v in col["categories"]]
        if col["encoding"] == "dummy" and labels:
            labels = labels[1:]
        if col["null_category"]:
            labels.append("NULL")
        layout.append((col, offset, labels))
        offset += len(labels)
    return layout


def _carry_centers(
    old: FeaturePreprocessor, centers: np.ndarray, new: FeaturePreprocessor
) -> np.ndarray:
    """Centroids fitted under ``old`` preprocessing, expressed under ``new`` (warm_start)."""
    new_layout = _column_layout(new)
    width = sum(1 if labels is None else len(labels) for _, _, labels in new_layout)
    out = np.zeros((len(centers), width))
    for (col_old, off_old, labels_old), (col_new, off_new, labels_new) in zip(
        _column_layout(old), new_layout, strict=True
    ):
        if labels_old is None or labels_new is None:
            units = centers[:, off_old] * float(col_old["scale"]) + float(col_old["center"])
            out[:, off_new] = (units - float(col_new["center"])) / float(col_new["scale"])
            continue
        position = {label: i for i, label in enumerate(labels_old)}
        for j, label in enumerate(labels_new):
            if label in position:  # a category the old model never saw starts at 0
                out[:, off_new + j] = centers[:, off_old + position[label]]
    return out


def _category_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def contamination_param(call: MLCall) -> float:
    call.check_params({"contamination": (int, float)})
    value = call.params.get("contamination")
    if value is None:
        raise InvalidArgument(
            f"ML.DETECT_ANOMALIES on model {call.model} needs STRUCT(<value> AS contamination), "
            "the expected fraction of anomalies in [0, 0.5]"
        )
    if not 0.0 <= float(value) <= 0.5:
        raise InvalidArgument(
            f"ML.DETECT_ANOMALIES parameter 'contamination' must be in [0, 0.5], got {value!r}"
        )
    return float(value)


def ml_detect_anomalies(service: SqlService, call: MLCall) -> pa.Table:
    """ML.DETECT_ANOMALIES for KMEANS and PCA models."""
    from shipyard.sql.decomposition import detect_pca_anomalies

    # The other types' handlers (AUTOENCODER, ARIMA_PLUS) wrap this one: name them all.
    model_type = require_model_type(
        service, call, ("KMEANS", "PCA"), also=("AUTOENCODER", "ARIMA_PLUS", "ARIMA_PLUS_XREG")
    )
    contamination = contamination_param(call)
    rows = call.require_input()
    predictor = service.models.load(call.model)
    if model_type == "PCA":
        return detect_pca_anomalies(predictor, rows, contamination)
    matrix = predictor.preprocessor.transform(rows, dtype=np.float64)
    distances = predictor.centroid_distances(matrix)
    scales = np.asarray(predictor.config["distance_scales"], dtype=np.float64)
    normalized = distances / scales[None, :]
    nearest = np.argmin(normalized, axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    value = normalized[np.arange(len(rows)), nearest]
    threshold = anomaly_threshold(predictor.config, contamination)
    out = {
        "is_anomaly": pa.array(value > threshold, type=pa.bool_()),
        "normalized_distance": pa.array(value, type=pa.float64()),
        "centroid_id": pa.array(nearest + 1, type=pa.int64()),
    }
    return _with_inputs(out, rows)


def _with_inputs(out: dict[str, pa.Array], rows: pa.Table) -> pa.Table:
    clash = [n for n in out if n in rows.column_names]
    if clash:
        raise InvalidArgument(
            f"input already has columns {clash}, which ML.DETECT_ANOMALIES outputs; rename or "
            "drop them",
            columns=clash,
        )
    return pa.Table.from_arrays(
        [*out.values(), *rows.columns], names=[*out.keys(), *rows.column_names]
    )


def evaluate_unsupervised(
    service: SqlService, call: MLCall, task: str, stored: dict[str, Any]
) -> pa.Table:
    """ML.EVALUATE for KMEANS (clustering) and PCA (dimensionality_reduction) models."""
    from shipyard.sql.decomposition import PCA_METRICS, evaluate_pca_rows

    if call.params.get("threshold") is not None:
        raise InvalidArgument(
            f"ML.EVALUATE parameter 'threshold' applies only to binary classification models; "
            f"model {call.model} is {task}"
        )
    names = KMEANS_METRICS if task == "clustering" else PCA_METRICS
    if call.input is None:
        metrics = stored
    else:
        predictor = service.models.load(call.model)
        if task == "clustering":
            metrics = evaluate_kmeans_rows(predictor, call.input)
        else:
            metrics = evaluate_pca_rows(predictor, call.input)
    return pa.table({name: pa.array([metrics.get(name)], type=pa.float64()) for name in names})
