"""ONNX Runtime for tree ensembles in online serving — when it agrees with the model and is faster.

XGBoost's and LightGBM's own predict calls carry a fixed cost of a few hundred microseconds
(argument checks, array-interface JSON, thread set-up) that dwarfs one row's worth of trees:
a 200-tree, 20-feature XGBoost regressor measured 466 µs a row through ``inplace_predict`` and
15 µs through ONNX Runtime on this project's machine. So, when a deployment's runtime is built:

1. the booster is converted with onnxmltools (XGBoost, LightGBM; other flavors stay native);
2. both are run on probe rows built from the model's own split thresholds — each feature at a
   threshold, one float32 step either side of it, missing, or in between — so that every
   comparison a tree makes is exercised where float32 rounding could flip it;
3. the ONNX model is kept only if it agrees (within ``RTOL``/``ATOL``: the trees are the same,
   only the order of the float32 sum differs) and a one-row call is faster;
4. both are timed on one row and on ``_LARGE`` rows (fresh rows each call, so that the CPU's
   branch predictors cannot learn the trees' paths): each side's cost is a fixed part plus a
   per-row part, and calls of at least the rows where the native line crosses below ONNX
   Runtime's go to the booster. XGBoost walks a row's 200 trees in about 4 µs against ONNX
   Runtime's 5 µs, so the micro-batches of concurrent requests (hundreds of rows) are cheaper
   natively once its fixed ~200 µs is paid.

The decision and its reason are reported per deployment (``EndpointService.stats``). Explanations
always use the native model (TreeSHAP needs the booster). ``EndpointConfig.runtime = "native"``
turns this off, for bit-identical agreement with ML.PREDICT.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.registry.predictor import Predictor

__all__ = ["Acceleration", "accelerate"]

RTOL = 1e-5
ATOL = 1e-6
_PROBE_ROWS = 256
_TIMING_CALLS = 50
_LARGE = 256  # rows of the large timing call
_LARGE_CALLS = 8  # distinct probe sets of _LARGE rows, each timed in turn


@dataclass
class Acceleration:
    predictor: Predictor  # what serves predictions
    runtime: str  # "onnxruntime" or "native"
    reason: str


class _OnnxTrees:
    """An ONNX Runtime session that answers like the booster it was converted from.

    Calls of ``native_from`` rows or more go to the booster itself (``native``), when set.
    """

    def __init__(self, session: Any, kind: str) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        outputs = session.get_outputs()
        self._output = outputs[-1].name  # probabilities for classifiers, values otherwise
        self._kind = kind
        self.native: Any = None
        self.native_from: int | None = None

    def _run(self, matrix: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(matrix, dtype=np.float32)
        out = np.asarray(self._session.run([self._output], {self._input: x})[0])
        if self._kind == "regression":
            return out.reshape(-1)
        if self._kind == "binary":
            return out[:, 1]
        return out

    def _large(self, matrix: np.ndarray) -> bool:
        return self.native_from is not None and len(matrix) >= self.native_from

    def inplace_predict(self, matrix: np.ndarray) -> np.ndarray:  # as xgboost.Booster
        if self._large(matrix):
            return np.asarray(self.native.inplace_predict(matrix))
        return self._run(matrix)

    def predict(self, matrix: np.ndarray, num_threads: int = 0) -> np.ndarray:  # as lightgbm
        if self._large(matrix):
            return np.asarray(self.native.predict(matrix, num_threads=num_threads))
        return self._run(matrix)


def accelerate(predictor: Predictor, *, mode: str = "auto") -> Acceleration:
    """The predictor to serve with: ONNX Runtime when it converts, agrees and is faster."""
    if mode == "native":
        return Acceleration(predictor, "native", "runtime 'native' was asked for")
    if predictor.flavor not in ("xgboost", "lightgbm"):
        return Acceleration(predictor, "native", f"no ONNX conversion for {predictor.flavor}")
    if predictor.task == "imported":  # CREATE MODEL … model_type='XGBOOST': no preprocessing
        return Acceleration(predictor, "native", "imported models run in their own library")
    try:
        import onnxmltools  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return Acceleration(
            predictor, "native", "onnxruntime/onnxmltools not installed (shipyard[onnx])"
        )
    width = len(predictor.preprocessor.feature_names_out)
    kind = (
        "regression"
        if predictor.label_info is None
        else "binary"
        if predictor.task == "binary_classification"
        else "multiclass"
    )
    try:
        session = _session(predictor, width)
        trees = _OnnxTrees(session, kind)
        fast = Predictor.from_dict(predictor.to_dict(), trees)
        fast._threads = predictor._threads
        cuts = _thresholds(predictor.model, predictor.flavor, width)
        probe = _probe(predictor.model, predictor.flavor, width, thresholds=cuts)
        want = predictor._scores(probe)
        got = fast._scores(probe)
    except Exception as exc:  # a model the converter does not handle: serve it natively
        return Acceleration(predictor, "native", f"ONNX conversion failed: {exc}")
    if want.shape != got.shape or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
        diff = float(np.max(np.abs(got - want))) if want.shape == got.shape else float("nan")
        return Acceleration(predictor, "native", f"ONNX Runtime disagreed (max |diff| {diff:g})")
    row = probe[:1]
    native_us, onnx_us = _per_call_us(predictor, [row]), _per_call_us(fast, [row])
    if onnx_us >= native_us:
        return Acceleration(
            predictor, "native", f"native is faster ({native_us:.0f} µs vs {onnx_us:.0f} µs)"
        )
    reason = f"{onnx_us:.0f} µs a row vs {native_us:.0f} µs natively"
    large = [
        _probe(predictor.model, predictor.flavor, width, rows=_LARGE, seed=seed, thresholds=cuts)
        for seed in range(1, _LARGE_CALLS + 1)
    ]
    native_large, onnx_large = _per_call_us(predictor, large), _per_call_us(fast, large)
    crossing = _crossing((onnx_us, onnx_large), (native_us, native_large))
    if crossing is not None:
        trees.native, trees.native_from = predictor.model, crossing
        reason += f"; calls of {crossing}+ rows run natively"
    return Acceleration(fast, "onnxruntime", reason)


def _crossing(onnx: tuple[float, float], native: tuple[float, float]) -> int | None:
    """The rows from which native calls are cheaper, from each side's times (µs) for one row
    and for ``_LARGE`` rows (a line through the two); None when ONNX Runtime stays cheaper."""
    onnx_row = (onnx[1] - onnx[0]) / (_LARGE - 1)
    native_row = (native[1] - native[0]) / (_LARGE - 1)
    if native_row >= onnx_row:
        return None
    return max(2, math.ceil(1 + (native[0] - onnx[0]) / (onnx_row - native_row)))


def _session(predictor: Predictor, width: int) -> Any:
    import onnxruntime as ort
    from onnxmltools.convert import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, width]))]
    model = predictor.model
    if predictor.flavor == "xgboost":
        onx = convert_xgboost(model, initial_types=types)
    else:
        onx = convert_lightgbm(model, initial_types=types, zipmap=False)
    options = ort.SessionOptions()
    threads = predictor._threads or 0
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        onx.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _thresholds(model: Any, flavor: str, width: int) -> list[np.ndarray]:
    """Each matrix column's split thresholds in the model."""
    found: list[list[float]] = [[] for _ in range(width)]
    if flavor == "xgboost":
        frame = model.trees_to_dataframe()
        names = list(model.feature_names or [])
        for feature, split in zip(frame["Feature"], frame["Split"], strict=True):
            if feature == "Leaf" or split != split:  # leaves, and NaN splits
                continue
            index = names.index(feature) if feature in names else int(str(feature).lstrip("f"))
            found[index].append(float(split))
    else:
        frame = model.trees_to_dataframe()
        names = list(model.feature_name())
        for feature, split in zip(frame["split_feature"], frame["threshold"], strict=True):
            if feature is None or split != split:
                continue
            found[names.index(feature)].append(float(split))
    return [np.unique(np.asarray(t, dtype=np.float32)) for t in found]


def _probe(
    model: Any,
    flavor: str,
    width: int,
    *,
    rows: int = _PROBE_ROWS,
    seed: int = 0,
    thresholds: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Rows that put every feature at, just beside, or between its thresholds, or missing."""
    rng = np.random.default_rng(seed)
    out = np.zeros((rows, width), dtype=np.float32)
    if thresholds is None:
        thresholds = _thresholds(model, flavor, width)
    for j, cuts in enumerate(thresholds):
        if not len(cuts):
            continue
        picks = cuts[rng.integers(0, len(cuts), rows)]
        how = rng.integers(0, 5, rows)
        column = picks.copy()
        column[how == 1] = np.nextafter(picks[how == 1], np.float32(np.inf))
        column[how == 2] = np.nextafter(picks[how == 2], np.float32(-np.inf))
        column[how == 3] = np.nan
        spread = rng.uniform(cuts.min() - 1, cuts.max() + 1, rows).astype(np.float32)
        column[how == 4] = spread[how == 4]
        out[:, j] = column
    return out


def _per_call_us(predictor: Predictor, matrices: list[np.ndarray]) -> float:
    """Median µs of a call, taking the matrices in turn.

    A one-thread model is timed by this thread's CPU time, which other processes on a busy
    machine do not inflate; a model with its own threads by the wall clock.
    """
    clock = time.thread_time if predictor._threads == 1 else time.perf_counter
    for matrix in matrices[:5]:
        predictor._scores(matrix)
    calls = max(_TIMING_CALLS // len(matrices), 3) * len(matrices)
    times = []
    for n in range(calls):
        matrix = matrices[n % len(matrices)]
        start = clock()
        predictor._scores(matrix)
        times.append(clock() - start)
    return float(np.median(times) * 1e6)
