"""The Predictor: a trained model plus its preprocessing, Arrow table in, Arrow table out.

``Predictor.predict`` produces BigQuery ML's ML.PREDICT output:

* ``predicted_<label>``: FLOAT64 for regression; for classifiers the predicted class, in the
  training label's own Arrow type (string, integer, bool, …);
* for classifiers, ``predicted_<label>_probs``: ``list<struct<label, prob: double>>``, one entry
  per class, in descending class order, so a binary model lists its positive class first
  (BigQuery ML's reference leaves the order open; its examples, and queries that read
  ``probs[OFFSET(0)]`` as the positive probability, show it first);
* then the input columns, unchanged (``keep_original_columns=False`` leaves them out; in
  BigQuery ML that argument only exists for PCA models).

A binary classifier predicts the positive class (the greater of the two, see
:class:`~shipyard.registry.preprocessing.LabelInfo`) when its probability is above
``threshold`` (default 0.5); a probability exactly at the threshold predicts the negative class
(BigQuery ML only says "above: positive, below: negative"). Multiclass models predict the most
probable class.

Unsupervised models have no label: a ``clustering`` (KMEANS) predictor outputs ``CENTROID_ID``
(INT64, 1-based) and ``NEAREST_CENTROIDS_DISTANCE`` (``list<struct<CENTROID_ID, DISTANCE>>``,
the nearest min(k, 5) centroids, nearest first); a ``dimensionality_reduction`` (PCA) predictor
outputs ``principal_component_1`` … ``principal_component_k`` (FLOAT64).

A ``recommendation`` (MATRIX_FACTORIZATION) predictor scores (user, item) pairs: its input has
the model's user and item columns and it outputs ``predicted_<rating_col>`` (explicit feedback)
or ``predicted_<rating_col>_confidence`` (implicit), NULL for a user or item training never saw
(see :mod:`shipyard.registry.factorization`).

A ``forecasting`` (ARIMA_PLUS) predictor answers one forecast per input row: the row carries the
model's time series id columns and optionally ``horizon`` and ``confidence_level``; the output is
ML.FORECAST's rows (see :mod:`shipyard.registry.forecasting`).

Everything is vectorised: the model runs once on the whole matrix and the list-of-struct column
is assembled from flat numpy buffers.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from shipyard.errors import InvalidArgument
from shipyard.registry import projection
from shipyard.registry.preprocessing import FeaturePreprocessor, LabelInfo

__all__ = ["TASKS", "UNSUPERVISED_TASKS", "Predictor"]

TASKS: tuple[str, ...] = (
    "regression",
    "binary_classification",
    "multiclass_classification",
    "clustering",
    "dimensionality_reduction",
    "recommendation",
    "forecasting",
)
#: Tasks without a label: KMEANS (``clustering``) and PCA (``dimensionality_reduction``).
UNSUPERVISED_TASKS: tuple[str, ...] = ("clustering", "dimensionality_reduction")
#: KMEANS' NEAREST_CENTROIDS_DISTANCE lists the nearest min(num_clusters, 5) centroids.
MAX_NEAREST_CENTROIDS = 5
_DTYPES = {"float32": np.float32, "float64": np.float64}
# Up to this many rows a tree model predicts on one thread (unless with_threads chose): its
# default pool costs more than it saves on a small batch, and far more on a busy machine, where
# the pool's barrier waits on a descheduled thread (one row of a 20-round XGBoost model: 0.15 ms
# on one thread, 24 ms on the default pool of a loaded 2-core machine). A row's prediction does
# not depend on the thread count.
_FEW_ROWS = 1024
_INT32_MAX = 2**31 - 1


def _tile(values: pa.Array, times: int) -> pa.Array:
    """``values`` repeated ``times`` times, built from numpy buffers (no per-row Python)."""
    dtype = values.type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        large = pa.types.is_large_string(dtype)
        offset_type = np.int64 if large else np.int32
        value_offsets = np.frombuffer(values.buffers()[1], dtype=offset_type)
        value_offsets = value_offsets[values.offset : values.offset + len(values) + 1]
        lengths = np.diff(value_offsets)
        start = int(value_offsets[0]) if len(value_offsets) else 0
        data = np.frombuffer(values.buffers()[2] or b"", dtype=np.uint8)
        data = data[start : start + int(lengths.sum())]
        offsets = np.zeros(len(values) * times + 1, dtype=offset_type)
        np.cumsum(np.tile(lengths, times), out=offsets[1:])
        cls = pa.LargeStringArray if large else pa.StringArray
        return cls.from_buffers(  # type: ignore[no-any-return]
            len(values) * times, pa.py_buffer(offsets), pa.py_buffer(np.tile(data, times))
        )
    return pa.array(np.tile(values.to_numpy(zero_copy_only=False), times), type=dtype)


class _ProbsLayout:
    """What a ``_probs`` column of one set of classes needs besides the probabilities.

    Built once per predictor: the labels in descending order, the Arrow types, the row count
    per chunk, and, for the small batches of online serving, the tiled labels and list offsets
    of recent row counts (Arrow arrays are immutable, so they can be shared between calls).
    """

    _SMALL_ROWS = 256  # row counts up to this have their labels and offsets cached
    _SMALL_ENTRIES = 32

    def __init__(self, classes: pa.Array) -> None:
        k = len(classes)
        self.k = k
        self.labels = classes.take(pa.array(np.arange(k)[::-1]))
        self.struct_type = pa.struct([("label", classes.type), ("prob", pa.float64())])
        self.list_type = pa.list_(self.struct_type)
        label_bytes = 0
        if pa.types.is_string(classes.type):
            label_bytes = int(sum(len(str(v).encode()) for v in self.labels.to_pylist()))
        # list offsets (and string offsets) are int32: split very large outputs into chunks.
        self.batch = max(1, _INT32_MAX // max(k, label_bytes, 1))
        self._small: dict[int, tuple[pa.Array, pa.Buffer]] = {}

    def parts(self, rows: int) -> tuple[pa.Array, pa.Buffer]:
        """(the labels tiled ``rows`` times, the int32 list offsets buffer) for ``rows`` rows."""
        cached = self._small.get(rows)
        if cached is not None:
            return cached
        offsets = pa.py_buffer(np.arange(0, rows * self.k + 1, self.k, dtype=np.int32))
        found = (_tile(self.labels, rows), offsets)
        if rows <= self._SMALL_ROWS and len(self._small) < self._SMALL_ENTRIES:
            self._small[rows] = found
        return found

    def column(self, probabilities: np.ndarray) -> pa.Array | pa.ChunkedArray:
        n = probabilities.shape[0]
        ordered = probabilities[:, ::-1]  # a view; contiguous when it came from interpret_scores
        chunks = []
        for start in range(0, max(n, 1), self.batch):
            stop = min(n, start + self.batch)
            rows = stop - start
            flat = np.ascontiguousarray(ordered[start:stop], dtype=np.float64).reshape(-1)
            labels, offsets = self.parts(rows)
            struct = pa.StructArray.from_buffers(
                self.struct_type, rows * self.k, [None], children=[labels, pa.array(flat)]
            )
            chunks.append(
                pa.Array.from_buffers(self.list_type, rows, [None, offsets], children=[struct])
            )
        return chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks)


def _probs_column(
    classes: pa.Array, probabilities: np.ndarray, layout: _ProbsLayout | None = None
) -> pa.Array | pa.ChunkedArray:
    """``list<struct<label, prob>>`` with the classes in descending order, per row.

    ``layout``: the classes' :class:`_ProbsLayout`, when the caller keeps one.
    """
    return (layout or _ProbsLayout(classes)).column(probabilities)


#: Up to this many rows a linear model's matrix is scored by one product and one running sum;
#: larger ones column by column, in blocks of ``_LINEAR_BLOCK_ROWS`` rows (the same arithmetic).
_SMALL_LINEAR_ROWS = 256
_LINEAR_BLOCK_ROWS = 8192
#: Rows per block of the fused path (no transposed copy to keep in cache: larger blocks, fewer
#: NumPy calls; 300k x 20: 8.6 ms of CPU against 9.9 at 8,192 rows).
_FUSED_BLOCK_ROWS = 32768
#: From this many rows ML.PREDICT reads a linear model's or KMEANS' input straight from its
#: columns, a block at a time (smaller batches: the matrix of FeaturePreprocessor.transform's
#: small-batch path).
_FROM_COLUMNS_ROWS = 4096


def _linear_coefficients(model: Any, *, classifier: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(coef (K, features), intercept (K,))`` in float64 of a scikit-learn linear model; None
    for other models (and for linear classifiers other than LogisticRegression)."""
    coef = getattr(model, "coef_", None)
    if coef is None or not hasattr(model, "intercept_"):
        return None
    if classifier and type(model).__name__ != "LogisticRegression":
        return None
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), coef.shape[:1])
    return coef, intercept


def _accumulate(
    decision: np.ndarray,
    start: int,
    stop: int,
    columns: Any,
    coef: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """``decision[k, start:stop]`` = the running sum, column after column in matrix order, of
    each column's values times ``coef[k, column]``: the arithmetic of
    :func:`_linear_decision`'s running sum, one block of rows at a time.

    ``columns``: ``(offset, values, center, inverse)`` per column in order, the column being
    ``(values - center) * inverse`` (``inverse`` None: ``values``), as
    :meth:`FeaturePreprocessor.numeric_blocks` gives them. ``scratch``: two float64 rows of at
    least ``stop - start`` values.
    """
    t, product = scratch[:, : stop - start]
    targets = [decision[k, start:stop] for k in range(len(coef))]
    first = True
    for offset, values, center, inv in columns:
        if inv is None:
            z = values
        else:
            z = np.subtract(values, center, out=t)
            np.multiply(t, inv, out=t)
        for k, target in enumerate(targets):
            if first:
                np.multiply(z, coef[k, offset], out=target)
            else:
                np.multiply(z, coef[k, offset], out=product)
                target += product
        first = False


def _linear_decision(matrix: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(K, rows): each row's products with ``coef`` summed from the first column to the last.

    A row's arithmetic depends neither on the matrix layout nor on how many rows come with it,
    so ML.PREDICT (which skips the matrix, see :meth:`Predictor._fused_linear_scores`), batch
    prediction in any chunk size and serving in any micro-batch agree bit for bit. (BLAS, as
    scikit-learn's ``predict`` calls it, treats a batch's last ``n % 4`` rows differently.)
    """
    n, width = matrix.shape
    if n <= _SMALL_LINEAR_ROWS:
        # products (rows, K, features), then one running sum along the features: cumsum adds
        # strictly left to right, as the column loop below
        products = matrix[:, None, :] * coef[None, :, :]
        return np.ascontiguousarray(np.cumsum(products, axis=2)[:, :, -1].T)
    decision = np.empty((len(coef), n))
    rows = min(n, _LINEAR_BLOCK_ROWS)
    scratch = np.empty((2, rows))
    # a row-major block is first copied column by column (in cache): strided columns cost ~2x
    transposed = None if matrix.flags.f_contiguous else np.empty((width, rows))
    for start in range(0, n, _LINEAR_BLOCK_ROWS):
        stop = min(n, start + _LINEAR_BLOCK_ROWS)
        block = matrix[start:stop].T
        if transposed is not None:
            block = transposed[:, : stop - start]
            block[...] = matrix[start:stop].T
        columns = ((j, block[j], 0.0, None) for j in range(width))
        _accumulate(decision, start, stop, columns, coef, scratch)
    return decision


def _linear_output(decision: np.ndarray, intercept: np.ndarray, *, classifier: bool) -> np.ndarray:
    """A linear model's output from its (K, rows) ``decision`` without the intercept: values
    (regression), or class probabilities (rows, classes) as scikit-learn's predict_proba."""
    decision += intercept[:, None]  # in place: one (K, rows) buffer fewer
    if not classifier:
        return decision[0]
    from scipy.special import expit, softmax

    if len(decision) == 1:  # binary: [P(class 0), P(class 1)], as predict_proba
        # written into one (rows, 2) buffer: the values of column_stack([1 - p, p])
        probabilities = np.empty((decision.shape[1], 2))
        expit(decision[0], out=probabilities[:, 1])
        np.subtract(1.0, probabilities[:, 1], out=probabilities[:, 0])
        return probabilities
    return np.asarray(softmax(decision.T, axis=1))


def _linear_scores(model: Any, matrix: np.ndarray, *, classifier: bool) -> np.ndarray | None:
    """A scikit-learn linear model's output (see :func:`_linear_output`) on a preprocessed
    matrix, computed row by row (:func:`_linear_decision`); None for other models."""
    found = _linear_coefficients(model, classifier=classifier)
    if found is None:
        return None
    coef, intercept = found
    return _linear_output(
        _linear_decision(np.asarray(matrix, dtype=np.float64), coef),
        intercept,
        classifier=classifier,
    )


#: Flavors whose models read a row-major or a column-major matrix alike (same results).
_EITHER_LAYOUT = ("xgboost", "lightgbm")
#: From this many rows, those flavors get a column-major matrix (Predictor.matrix).
_COLUMN_MAJOR_ROWS = 4096


def _nearest(distances: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(1-based ids, distances) of each row's ``m`` nearest centroids, nearest first: a stable
    argsort's order (ties: the lower id first), found a block of rows at a time (see
    :mod:`shipyard.registry.clustering_output`)."""
    from shipyard.registry.clustering_output import nearest_from_distances

    return nearest_from_distances(distances, m)


class Predictor:
    """Runs a trained model on Arrow tables with the preprocessing it was trained with.

    Parameters: ``task`` (one of :data:`TASKS`), the in-memory ``model`` (an xgboost/lightgbm
    Booster or a scikit-learn estimator), its ``flavor``, the fitted ``preprocessor``, the
    ``label_info`` (classifiers only), the training ``label`` column name, and ``config``
    (``matrix_dtype``: "float32" | "float64"; ``threshold``: the default binary threshold).
    """

    def __init__(
        self,
        task: str,
        model: Any,
        flavor: str,
        preprocessor: FeaturePreprocessor,
        label_info: LabelInfo | None,
        label: str,
        config: dict[str, Any] | None = None,
    ) -> None:
        if task not in TASKS:
            raise InvalidArgument(f"task {task!r} is not valid; valid tasks: {', '.join(TASKS)}")
        unlabelled = ("regression", "recommendation", "forecasting", *UNSUPERVISED_TASKS)
        if task not in unlabelled and label_info is None:
            raise InvalidArgument(f"a {task} predictor needs the label's classes (label_info)")
        if task == "binary_classification" and label_info and label_info.n_classes != 2:
            raise InvalidArgument(
                f"a binary_classification predictor needs 2 classes, got {label_info.n_classes}"
            )
        self.task = task
        self.model = model
        self.flavor = flavor
        self.preprocessor = preprocessor
        self.label_info = label_info if task not in unlabelled else None
        self.label = label
        self.config = dict(config or {})
        dtype_name = self.config.setdefault(
            "matrix_dtype", "float32" if flavor in ("xgboost", "lightgbm") else "float64"
        )
        if dtype_name not in _DTYPES:
            raise InvalidArgument(
                f"matrix_dtype {dtype_name!r} is not valid; valid: {', '.join(_DTYPES)}"
            )
        self._dtype = _DTYPES[dtype_name]
        self.config.setdefault("threshold", 0.5)
        if self.config.get("transform"):  # CREATE MODEL … TRANSFORM(…): raw rows in
            from shipyard.registry.transform import with_transform

            self.preprocessor = with_transform(preprocessor, self.config["transform"])

    # -- description -------------------------------------------------------------------------

    @property
    def output_names(self) -> list[str]:
        if self.task == "clustering":
            return ["CENTROID_ID", "NEAREST_CENTROIDS_DISTANCE"]
        if self.task == "dimensionality_reduction":
            k = int(self.config["num_components"])
            # AUTOENCODER: latent_col_1 … latent_col_k
            prefix = str(self.config.get("output_prefix", "principal_component_"))
            return [f"{prefix}{i}" for i in range(1, k + 1)]
        if self.task == "recommendation":
            return [str(self.config["output_column"])]
        if self.task == "forecasting":  # ARIMA_PLUS: ML.FORECAST's columns
            from shipyard.registry.forecasting import FORECAST_COLUMNS

            return [*self.config.get("id_cols", []), *(n for n, _ in FORECAST_COLUMNS)]
        names = [f"predicted_{self.label}"]
        if self.label_info is not None:
            names.append(f"predicted_{self.label}_probs")
        return names

    @property
    def default_keep_original_columns(self) -> bool:
        """ML.PREDICT's default: PCA leaves the input columns out (as BigQuery ML), others keep."""
        if "keep_original_columns" in self.config:  # AUTOENCODER keeps them
            return bool(self.config["keep_original_columns"])
        return self.task != "dimensionality_reduction"

    def _output_types(self) -> list[pa.DataType]:
        if self.task == "clustering":
            entry = pa.struct([("CENTROID_ID", pa.int64()), ("DISTANCE", pa.float64())])
            return [pa.int64(), pa.list_(entry)]
        if self.task in ("dimensionality_reduction", "recommendation"):
            return [pa.float64()] * len(self.output_names)
        if self.task == "forecasting":
            from shipyard.registry.forecasting import FORECAST_COLUMNS

            ids = [pa.type_for_alias(t) for t in self.config.get("id_types", [])]
            return [*ids, *(t for _, t in FORECAST_COLUMNS)]
        if self.label_info is None:
            return [pa.float64()]
        t = self.label_info.arrow_type
        return [t, pa.list_(pa.struct([("label", t), ("prob", pa.float64())]))]

    @property
    def signature(self) -> dict[str, list[dict[str, str]]]:
        """``{"inputs": [{name, type}], "outputs": [{name, type}]}`` with Arrow type strings."""
        outputs = [
            {"name": n, "type": str(t)}
            for n, t in zip(self.output_names, self._output_types(), strict=True)
        ]
        return {"inputs": self.preprocessor.input_schema, "outputs": outputs}

    def to_dict(self) -> dict[str, Any]:
        """Pure JSON: everything but the model object (stored by its flavor)."""
        return {
            "task": self.task,
            "flavor": self.flavor,
            "label": self.label,
            "preprocessor": self.preprocessor.to_dict(),
            "label_info": self.label_info.to_dict() if self.label_info else None,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], model: Any) -> Predictor:
        """The predictor that :meth:`to_dict` described, around the loaded ``model``."""
        if data.get("task") == "imported":  # ONNX / XGBOOST imported models: no preprocessing
            from shipyard.registry.imported import ImportedPredictor

            return ImportedPredictor.from_dict(data, model)
        if data.get("task") == "contribution_analysis":  # an insights table, nothing to run
            from shipyard.registry.insights import InsightsPredictor

            return InsightsPredictor.from_dict(data, model)  # type: ignore[return-value]
        if data.get("task") == "transform":  # model_type='TRANSFORM_ONLY': no model at all
            from shipyard.registry.transform import TransformOnlyPredictor

            return TransformOnlyPredictor.from_dict(data, model)  # type: ignore[return-value]
        try:
            label_info = data.get("label_info")
            return cls(
                task=data["task"],
                model=model,
                flavor=data["flavor"],
                preprocessor=FeaturePreprocessor.from_dict(data["preprocessor"]),
                label_info=LabelInfo.from_dict(label_info) if label_info else None,
                label=data["label"],
                config=data.get("config") or {},
            )
        except KeyError as exc:
            raise InvalidArgument(
                f"the stored predictor description lacks {exc.args[0]!r}; it must be what "
                "Predictor.to_dict() produced"
            ) from exc

    def __repr__(self) -> str:
        return f"Predictor(task={self.task!r}, flavor={self.flavor!r}, label={self.label!r})"

    # -- prediction --------------------------------------------------------------------------

    def _threshold(self, threshold: float | None) -> float:
        if threshold is None:
            return float(self.config["threshold"])
        if self.task != "binary_classification":
            raise InvalidArgument(
                f"threshold={threshold} applies only to binary classification models; this "
                f"model is {self.task}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidArgument(f"threshold must be a number in [0, 1], got {threshold!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise InvalidArgument(f"threshold must be in [0, 1], got {threshold}")
        return float(threshold)

    def matrix(self, table: pa.Table) -> np.ndarray:
        """``table`` preprocessed into the model's matrix, in the layout the model reads fastest.

        Tree boosters read either layout with the same results, so from
        ``_COLUMN_MAJOR_ROWS`` rows they get a column-major matrix, whose numeric columns are
        contiguous copies (see :meth:`FeaturePreprocessor.transform`); smaller batches (online
        serving, ONNX Runtime) stay row-major.
        """
        order: Literal["C", "F"] = "C"
        if self.flavor in _EITHER_LAYOUT and table.num_rows >= _COLUMN_MAJOR_ROWS:
            order = "F"
        return self.preprocessor.transform(table, dtype=self._dtype, order=order)

    _threads = 0  # model threads per call; 0: the library's default (every core)

    def with_threads(self, threads: int) -> Predictor:
        """A copy whose model calls use ``threads`` threads; the model object is copied.

        Online serving uses 1: a one-row XGBoost call on a busy 2-core machine measured 0.5 ms
        with one thread and 6 ms with its default pool, whose threads wait on each other.
        """
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise InvalidArgument(f"threads must be a non-negative integer, got {threads!r}")
        model = self.model
        if self.flavor == "xgboost":
            model = model.copy()
            model.set_param({"nthread": threads})
        copy = Predictor.from_dict(self.to_dict(), model)
        copy._threads = threads
        return copy

    def _scores(self, matrix: np.ndarray) -> np.ndarray:
        """The model's raw output: values (regression) or probabilities (classifiers)."""
        if len(matrix) == 0:  # scikit-learn refuses an empty matrix; the answer is empty
            k = self.label_info.n_classes if self.label_info is not None else 0
            return np.zeros((0, k)) if k else np.zeros(0)
        model = self.model
        threads = self._threads or (1 if len(matrix) <= _FEW_ROWS else 0)
        if self.flavor == "xgboost":
            if threads == 1 and self._threads == 0:
                model = self._one_thread_booster()
            return np.asarray(model.inplace_predict(matrix))
        if self.flavor == "lightgbm":
            return np.asarray(model.predict(matrix, num_threads=threads))
        linear = _linear_scores(model, matrix, classifier=self.label_info is not None)
        if self.label_info is None:
            return linear if linear is not None else np.asarray(model.predict(matrix))
        proba = linear if linear is not None else np.asarray(model.predict_proba(matrix))
        return self._in_class_order(proba)

    def _in_class_order(self, proba: np.ndarray) -> np.ndarray:
        """Class probabilities with a column per class index, as the label info counts them."""
        assert self.label_info is not None
        model = self.model
        k = self.label_info.n_classes
        seen = np.asarray(getattr(model, "classes_", np.arange(k)))
        if proba.shape[1] != k or not np.array_equal(seen, np.arange(k)):
            # A class absent from the training split: place the columns by class index.
            full = np.zeros((proba.shape[0], k))
            full[:, seen.astype(np.int64)] = proba
            proba = full
        return proba

    _one_thread: Any = None

    def _one_thread_booster(self) -> Any:
        """A copy of the XGBoost booster set to one thread (made once; see ``_FEW_ROWS``)."""
        if self._one_thread is None:
            copy = self.model.copy()
            copy.set_param({"nthread": 1})
            self._one_thread = copy
        return self._one_thread

    def predict_raw(
        self, matrix: np.ndarray, *, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, probabilities) for a preprocessed matrix.

        Regression: (float64 values, None). Classification: (class indices 0..K-1 as int64,
        float64 probabilities of shape (rows, K) in class order).
        """
        return self.interpret_scores(self._scores(matrix), threshold=threshold)

    def interpret_scores(
        self, scores: np.ndarray, *, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, probabilities), as :meth:`predict_raw`, from the model's raw output.

        ``scores`` are values (regression), positive-class probabilities (binary, 1-D) or
        class probabilities (rows, K).
        """
        cut = self._threshold(threshold)
        scores = np.asarray(scores)
        if self.label_info is None:
            return scores.astype(np.float64, copy=False).reshape(-1), None
        k = self.label_info.n_classes
        # One buffer, filled in *descending* class order (the order of the _probs column);
        # the class-ordered matrix is a reversed view of it. Fewer large temporaries matter:
        # fresh memory is most of the cost of assembling the output.
        descending = np.empty((len(scores), k))
        if self.task == "binary_classification" and scores.ndim == 1:
            descending[:, 0] = scores
            np.subtract(1.0, descending[:, 0], out=descending[:, 1])
        else:
            descending[...] = scores.reshape(len(scores), k)[:, ::-1]
        probabilities = descending[:, ::-1]
        if self.task == "binary_classification":
            codes = (descending[:, 0] > cut).astype(np.int64)
        else:
            codes = np.argmax(probabilities, axis=1).astype(np.int64)
        return codes, probabilities

    def predict(
        self,
        table: pa.Table,
        *,
        threshold: float | None = None,
        keep_original_columns: bool = True,
    ) -> pa.Table:
        """ML.PREDICT: the predicted columns first, then (by default) the input columns."""
        if self.task == "forecasting":  # ARIMA_PLUS: each row asks for a forecast
            from shipyard.registry.forecasting import predict_instances

            self._threshold(threshold)  # refuses a threshold
            return predict_instances(self.model, table)
        names = self.output_names
        if keep_original_columns:
            clash = [n for n in names if n in table.column_names]
            if clash:
                raise InvalidArgument(
                    f"input already has columns {clash}, which ML.PREDICT outputs; rename or "
                    "drop them (or pass keep_original_columns=False)",
                    columns=clash,
                )
        if self.task == "recommendation":
            self._threshold(threshold)  # refuses a threshold
            scored: list[pa.Array | pa.ChunkedArray] = [self._recommendation_column(table)]
            if keep_original_columns:
                scored.extend(table.columns)
                names = names + table.column_names
            return pa.Table.from_arrays(scored, names=names)
        columns: list[pa.Array | pa.ChunkedArray]
        scores = self._fused_linear_scores(table)
        if scores is None:
            scores = self._network_scores(table)
        if scores is not None:
            predictions, probabilities = self.interpret_scores(scores, threshold=threshold)
            return self._predicted_table(
                table, predictions, probabilities, names, keep_original_columns
            )
        if self.task in UNSUPERVISED_TASKS:
            self._threshold(threshold)  # refuses a threshold
            if self.task == "clustering":  # KMEANS: from the table, a block at a time
                columns = self._clustering_columns(table)
            else:  # PCA (from the table, a block at a time) and AUTOENCODER
                columns = self._reduction_columns(table)
            if keep_original_columns:
                columns.extend(table.columns)
                names = names + table.column_names
            return pa.Table.from_arrays(columns, names=names)
        matrix = self.matrix(table)
        predictions, probabilities = self.predict_raw(matrix, threshold=threshold)
        return self._predicted_table(
            table, predictions, probabilities, names, keep_original_columns
        )

    def _fused_linear_scores(self, table: pa.Table) -> np.ndarray | None:
        """A linear model's scores on ``table`` straight from its columns, without the matrix
        (None when that does not apply: another model, a small table, a feature that is not
        numeric). The arithmetic is :meth:`_scores`' on the matrix, bit for bit: each column
        as :meth:`FeaturePreprocessor.transform` writes it, then the same running sum. At 300k
        rows x 20 features this skips ~48 MB of fresh matrix (most of ML.PREDICT's time)."""
        if (
            self.flavor != "sklearn"
            or self._dtype != np.float64
            or table.num_rows < _FROM_COLUMNS_ROWS
        ):
            return None
        classifier = self.label_info is not None
        found = _linear_coefficients(self.model, classifier=classifier)
        if found is None:
            return None
        coef, intercept = found
        # First without looking for NaN/±inf in the inputs: such a value makes its row's sum
        # NaN or ±inf, and one sum over the result finds it; only then the pass that imputes.
        decision = self._fused_decision(table, coef, impute_nonfinite=False)
        if decision is None:
            return None
        if not math.isfinite(np.einsum("ij->", decision)):
            decision = self._fused_decision(table, coef, impute_nonfinite=True)
            assert decision is not None
        scores = _linear_output(decision, intercept, classifier=classifier)
        return self._in_class_order(scores) if classifier else scores

    def _fused_decision(
        self, table: pa.Table, coef: np.ndarray, *, impute_nonfinite: bool
    ) -> np.ndarray | None:
        """(K, rows): :func:`_linear_decision` of ``table``'s matrix, from its columns."""
        blocks = self.preprocessor.numeric_blocks(
            table, rows=_FUSED_BLOCK_ROWS, impute_nonfinite=impute_nonfinite
        )
        if blocks is None:
            return None
        n = table.num_rows
        decision = np.empty((len(coef), n))
        scratch = np.empty((2, min(n, _FUSED_BLOCK_ROWS)))
        for start, stop, columns in blocks:
            _accumulate(decision, start, stop, columns, coef, scratch)
        return decision

    def _predicted_table(
        self,
        table: pa.Table,
        predictions: np.ndarray,
        probabilities: np.ndarray | None,
        names: list[str],
        keep_original_columns: bool,
    ) -> pa.Table:
        """ML.PREDICT's output: the predicted columns, then (``keep_original_columns``) the
        input's."""
        columns: list[pa.Array | pa.ChunkedArray]
        if self.label_info is None:
            columns = [pa.array(predictions, type=pa.float64())]
        else:
            assert probabilities is not None
            columns = [
                self.label_info.decode(predictions),
                self._probs_layout().column(probabilities),
            ]
        if keep_original_columns:
            columns.extend(table.columns)
            names = names + table.column_names
        return pa.Table.from_arrays(columns, names=names)

    _layout: _ProbsLayout | None = None

    def _probs_layout(self) -> _ProbsLayout:
        if self._layout is None:
            assert self.label_info is not None
            self._layout = _ProbsLayout(self.label_info.classes)
        return self._layout

    def explain(
        self,
        table: pa.Table,
        *,
        top_k_features: int | None = None,
        threshold: float | None = None,
        approx_feature_contrib: bool = False,
        keep_original_columns: bool = True,
    ) -> pa.Table:
        """ML.EXPLAIN_PREDICT: ML.PREDICT's columns, per-row feature attributions, the inputs.

        See :mod:`shipyard.registry.explain`.
        """
        from shipyard.registry.explain import explain

        return explain(
            self,
            table,
            top_k_features=top_k_features,
            threshold=threshold,
            approx_feature_contrib=approx_feature_contrib,
            keep_original_columns=keep_original_columns,
        )

    # -- recommendation (MATRIX_FACTORIZATION) ------------------------------------------------

    def _recommendation_column(self, table: pa.Table) -> pa.Array:
        from shipyard.registry.factorization import predict_pairs

        user_col, item_col = str(self.config["user_col"]), str(self.config["item_col"])
        missing = [c for c in (user_col, item_col) if c not in table.column_names]
        if missing:
            raise InvalidArgument(
                f"input is missing columns {missing}; the model scores ({user_col}, {item_col}) "
                "pairs",
                missing=missing,
            )
        users = self.model.user_index(table[user_col], user_col)
        items = self.model.item_index(table[item_col], item_col)
        return predict_pairs(self.model, users, items)

    # -- clustering (KMEANS) and dimensionality reduction (PCA) --------------------------------

    def centroid_distances(
        self, matrix: np.ndarray, squared_norms: np.ndarray | None = None
    ) -> np.ndarray:
        """(rows, clusters): each row's distance to each centroid (``distance_type``).

        ``squared_norms``: the rows' squared norms (``einsum("ij,ij->i")``), when the caller
        has them (EUCLIDEAN). The product is thin (rows x clusters): from ``_FEW_ROWS`` rows
        BLAS runs on one thread, as for PCA (300k x 20, 8 clusters on a busy 2-core machine:
        240 ms median on two threads, 66 ms on one; quiet, 15 ms and 20 ms), with the same
        values (a row's products do not depend on the thread count)."""
        if len(matrix) > _FEW_ROWS:
            with one_blas_thread():
                return self._centroid_distances(matrix, squared_norms)
        return self._centroid_distances(matrix, squared_norms)

    def _centroid_distances(
        self, matrix: np.ndarray, squared_norms: np.ndarray | None
    ) -> np.ndarray:
        """The distances, a block of rows at a time (``clustering_output.distances``):
        EUCLIDEAN ``sqrt(max(|x|² - 2 x·c + |c|², 0))`` on BLAS' product; COSINE BigQuery ML's
        ``sqrt(1 - cosine similarity)`` (an all-zero row or centroid is at distance 1)."""
        from shipyard.registry.clustering_output import distances

        cosine = self.config.get("distance_type") == "COSINE"
        return distances(matrix, self.model.cluster_centers_, cosine, squared_norms)

    def principal_components(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, components): the projection of preprocessed rows on the components (PCA;
        column-major, so each component's values are contiguous), or the latent layer's
        activations (AUTOENCODER).

        The products are thin (rows x a few columns): from ``_FEW_ROWS`` rows BLAS runs on one
        thread (see ``one_blas_thread``); a row's values do not depend on the thread count.
        """
        if len(matrix) == 0:
            return np.zeros((0, int(self.config["num_components"])))
        x = np.asarray(matrix, dtype=np.float64)
        if len(x) <= _FEW_ROWS:
            return _latent(self.model, x)
        with one_blas_thread():
            return _latent(self.model, x)

    def _reduction_columns(self, table: pa.Table) -> list[pa.Array | pa.ChunkedArray]:
        """ML.PREDICT's PCA / AUTOENCODER columns of ``table``. A PCA model on numeric
        features projects a large table a block of rows at a time from its columns, without
        the whole matrix (see :mod:`shipyard.registry.projection`; the same bits). Not behind a
        TRANSFORM: the block path reads the input columns as they come."""
        if (
            table.num_rows >= 8192  # two blocks at least (see projection.block_rows)
            and self.config.get("model_type") == "PCA"
            and not self.config.get("transform")
            and self._dtype == np.float64
        ):
            with one_blas_thread():
                projected = projection.project_table(self.model, self.preprocessor, table)
            if projected is not None:
                return [pa.array(projected[:, i]) for i in range(projected.shape[1])]
        if (
            self.flavor == "torch"
            and self.task == "dimensionality_reduction"
            and self._dtype == np.float64
        ):
            # The latent layer from the columns, a block at a time (NeuralNet.output_table)
            with one_blas_thread():
                latent = self.model.output_table(self.preprocessor, table, latent=True)
            if latent is not None:
                return [pa.array(latent[:, i]) for i in range(latent.shape[1])]
        return self._unsupervised_columns(self.matrix(table))

    def _network_scores(self, table: pa.Table) -> np.ndarray | None:
        """A DNN's values or class probabilities on a large ``table`` straight from its
        columns, a block of rows at a time (:meth:`NeuralNet.predict_proba_table`,
        :meth:`NeuralNet.predict_table`): :meth:`_scores`' bits without the model matrix.
        None for other models, or where that does not apply. On BLAS's default threads, as
        the library's own forward pass (one thread is steadier on a busy machine but, quiet,
        ~20% slower: 50k rows x 20-64-32-2, 24 ms against 20)."""
        if self.flavor != "torch" or self._dtype != np.float64 or self.task in UNSUPERVISED_TASKS:
            return None
        if self.label_info is None:
            return self.model.predict_table(self.preprocessor, table)  # type: ignore[no-any-return]
        proba = self.model.predict_proba_table(self.preprocessor, table)
        return None if proba is None else self._in_class_order(proba)

    def _unsupervised_columns(self, matrix: np.ndarray) -> list[pa.Array | pa.ChunkedArray]:
        if self.task == "dimensionality_reduction":
            projected = self.principal_components(matrix)
            return [pa.array(projected[:, i], type=pa.float64()) for i in range(projected.shape[1])]
        return self._clustering_columns(matrix=matrix)

    def _clustering_columns(
        self, table: pa.Table | None = None, *, matrix: np.ndarray | None = None
    ) -> list[pa.Array | pa.ChunkedArray]:
        """KMEANS' ``CENTROID_ID`` and ``NEAREST_CENTROIDS_DISTANCE`` of ``table`` (or of its
        model ``matrix``): distances and ranking a block of rows at a time, the blocks of a
        large all-numeric table built from its columns without the whole matrix (see
        :mod:`shipyard.registry.clustering_output`); the same values either way."""
        from shipyard.registry import clustering_output as co

        centers = self.model.cluster_centers_
        cosine = self.config.get("distance_type") == "COSINE"
        m = min(len(centers), MAX_NEAREST_CENTROIDS)
        n = len(matrix) if matrix is not None else table.num_rows  # type: ignore[union-attr]
        with one_blas_thread() if n > _FEW_ROWS else contextlib.nullcontext():
            found = None
            if matrix is None and n >= _FROM_COLUMNS_ROWS and self._dtype == np.float64:
                found = co.nearest_from_table(self.preprocessor, table, centers, cosine, m)
            if found is None:
                if matrix is None:
                    matrix = self.matrix(table)  # type: ignore[arg-type]
                found = co.nearest_from_matrix(matrix, centers, cosine, m)
        return co.nearest_columns(*found)


def _latent(model: Any, x: np.ndarray) -> np.ndarray:
    """``model.transform(x)``; for a scikit-learn PCA (not whitened) its arithmetic without its
    input checks, which the preprocessed matrix passes by construction (numbers, imputed, the
    model's width): the same values, without a finiteness pass over the whole matrix. A
    non-finite result (a non-finite input) goes to scikit-learn's transform and its error."""
    components = getattr(model, "components_", None)
    if components is None or getattr(model, "whiten", True):
        return np.asarray(model.transform(x))
    product = x @ components.T  # scikit-learn's PCA.transform: the centring after the product
    shift = np.reshape(model.mean_, (1, -1)) @ components.T
    # The centring written component by component: one pass instead of an in-place one and
    # then a strided copy per output column (300k x 5: ~1 ms less); the result is the
    # column-major (rows, components) view, whose columns Arrow takes without copying.
    projected = np.empty((product.shape[1], len(x)))
    np.subtract(product.T, shift.T, out=projected)
    if not math.isfinite(np.einsum("ij->", projected)):  # einsum: a plain, cheap sum
        return np.asarray(model.transform(x))
    return projected.T


_BLAS_CONTROLLER: Any = None


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread, for thin products on many rows
    ((rows x features) @ (features x a few columns)): a row's values do not depend on the
    thread count.

    On a busy 2-core machine OpenBLAS' two threads wait on each other: PCA's projection of
    300k x 20 rows on 5 components took 79 ms on the default two threads and 23 ms on one
    ((300k x 20) @ (20 x 5) in training: 110 ms against 4-8 ms); quiet, two threads gain at
    most 2x on a few milliseconds. scikit-learn's KMeans limits BLAS the same way.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()  # inspects the loaded libraries once
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


class PredictorCache:
    """A small thread-safe LRU of loaded predictors, keyed by ``model@version:manifest-digest``.

    The digest in the key means a cached predictor can never outlive the bytes it came from.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._items: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, version: int, manifest_digest: str) -> str:
        return f"{model}@{version}:{manifest_digest}"

    def get(self, key: str) -> Predictor | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, predictor: Predictor) -> None:
        with self._lock:
            self._items[key] = predictor
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop_model(self, model: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k.startswith(f"{model}@")]:
                del self._items[key]
