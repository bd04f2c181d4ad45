"""Every BigQuery ML model type: CREATE MODEL and ML.PREDICT vs the library called directly.

For each model type the same rows go to both sides:

- **train**: ``CREATE OR REPLACE MODEL … OPTIONS(…, data_split_method='no_split')`` through
  ``ws.sql`` against the library's own fit on the same rows, as a NumPy matrix built before the
  timing (what a user who already holds the data in memory would call), with the settings
  Shipyard gives the library (iterations, regularisation, threads, seeds where they matter).
  Shipyard's run also reads the rows from DuckDB, preprocesses them, computes ML.TRAINING_INFO
  and the evaluation metrics and writes the model package: each Shipyard run is instrumented
  (:class:`bench_sql.Instrumented`) so those pieces, and the library's own time **inside** the
  Shipyard run, are printed; ``in-run`` = Shipyard's total ÷ the library's time in the same run.
- **predict**: ``SELECT * FROM ML.PREDICT(MODEL …, TABLE …)`` (ML.RECOMMEND, ML.FORECAST for
  matrix factorization and ARIMA_PLUS) fetched to Arrow, against DuckDB's scan of the same table
  to Arrow plus the library's predict on the prebuilt matrix (the physical limit, as in
  bench_sql); the ratio against the library's predict alone is shown too.

The two sides alternate (ABBA) after warm-up runs; medians are compared. Target: ≤ 1.2x
(issue 3). ``--only models`` in run.py; ``--quick`` for a smaller run of a few minutes.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import shipyard.sql.modeltypes as modeltypes
import shipyard.sql.service as sql_service_module
from bench_sql import Instrumented
from common import SEED, Probe, Sample, Series, fmt_s, interleave, make_regression_table
from shipyard.registry.preprocessing import FeaturePreprocessor

Log = Callable[[str], None]

TARGET = 1.2
COLS = 20
_SHIPYARD_SEED = 20240101  # Shipyard's trainers' seed (sql.training._SEED)
# The anomaly thresholds a model keeps: np.quantile at 1,001 points (sql.clustering)
_QUANTILE_POINTS = np.linspace(0.0, 1.0, 1001)

# rows per family: (default, --quick)
SIZES = {
    "tabular": (300_000, 30_000),
    "forest": (50_000, 10_000),
    "neural": (50_000, 10_000),
    "ratings": (500_000, 50_000),
    "arima_series": (1_000, 100),
    "arima_auto_series": (100, 10),
}
ARIMA_POINTS = 60  # daily points per series (fixed order)
ARIMA_AUTO_POINTS = 40  # daily points per series (auto.ARIMA)
ARIMA_HORIZON = 30


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("models (--only models)")
    group.add_argument(
        "--types",
        help="comma-separated subset of the cases (e.g. LINEAR_REG,KMEANS,ARIMA_PLUS)",
    )


# --------------------------------------------------------------------------------------------
# one case


@dataclass
class Case:
    name: str
    create_sql: str
    raw_fit: Callable[[], Any]
    raw_label: str
    # library calls inside Shipyard's CREATE MODEL: (owner, attribute, label)
    library: list[tuple[Any, str, str]]
    predict_sql: str | None = None
    predict_table: str | None = None  # DuckDB table the raw side scans
    raw_predict: Callable[[Any], Any] | None = None
    predict_label: str = ""
    note: str = ""
    # after the timed CREATE MODEL runs: make the raw side match (e.g. iterations Shipyard ran)
    align: Callable[[Any], str] | None = None
    train_reps: int | None = None
    warmup: int | None = None
    prewarm: Callable[[], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The same outputs by hand: what a library user adds to the fit (``raw_outputs(fitted)``)
    # or to the prediction (``raw_predict_outputs(fitted, predicted)``) to get what CREATE
    # MODEL or ML.PREDICT return (ML.EVALUATE's metrics, DETECT_ANOMALIES' thresholds, the
    # output columns), with the library's own functions where it has them.
    raw_outputs: Callable[[Any], Any] | None = None
    outputs_label: str = ""
    raw_predict_outputs: Callable[[Any, Any], Any] | None = None
    predict_outputs_label: str = ""


def _common_probes(ws: Any, case: Case) -> Callable[[Probe], Any]:
    def install(probe: Probe) -> Any:
        sql = getattr(getattr(ws, "services", None), "sql", None)
        probe.wrap(sql_service_module, "fetch_arrow", "DuckDB → Arrow (fetch_arrow)")
        probe.wrap(FeaturePreprocessor, "fit", "FeaturePreprocessor.fit")
        probe.wrap(FeaturePreprocessor, "transform", "FeaturePreprocessor.transform")
        probe.wrap(modeltypes, "_split", "data split")
        probe.wrap(modeltypes, "evaluate", "evaluation metrics (evaluate)")
        if sql is not None:
            probe.wrap(sql.tables, "record_version", "input table version")
            probe.wrap(sql.models, "register", "register the model (package)")
        for owner, attr, label in case.library:
            probe.wrap(owner, attr, label)
        return contextlib.nullcontext()

    return install


def _library_seconds(probe: Probe, case: Case) -> float:
    labels = {label for _, _, label in case.library}
    return sum(probe.seconds.get(label, 0.0) for label in labels)


def _pieces(total: float, probe: Probe, case: Case) -> dict[str, float]:
    out = {k: round(v, 4) for k, v in probe.seconds.items()}
    lib = _library_seconds(probe, case)
    out["library (sum)"] = round(lib, 4)
    out["total"] = round(total, 4)
    return out


def _train_source(create_sql: str) -> str | None:
    """The table a benchmark's CREATE MODEL reads (``… AS SELECT * FROM <table>``)."""
    found = re.search(r"AS SELECT [\w\s,*]+ FROM ([\w.]+)\s*$", create_sql)
    return found.group(1) if found else None


def _ratio(a: Series, b: Series) -> float:
    return a.wall / b.wall if b.wall > 0 else float("inf")


def _same_outputs(ship: Series, series: dict[str, Series], label: str) -> dict[str, Any]:
    """The ratio against the raw side that also computes Shipyard's outputs by hand (the scan
    and the library's work, then ``label``), when the case has one."""
    same = series.get("raw.same_outputs")
    if same is None:
        return {}
    return {
        "raw_same_outputs": same.to_dict(),
        "raw_outputs": series["raw.outputs"].to_dict(),
        "ratio_vs_same_outputs": round(_ratio(ship, same), 3),
        "outputs_label": label,
    }


def run_case(
    ws: Any, case: Case, *, reps: int, predict_reps: int, warmup: int, log: Log
) -> dict[str, Any]:
    if case.prewarm is not None:
        log(f"{case.name}: pre-warm (not timed)")
        case.prewarm()
    warm = case.warmup if case.warmup is not None else warmup
    state: dict[str, Any] = {}
    shipyard = Instrumented(lambda: ws.sql(case.create_sql), _common_probes(ws, case))

    source = _train_source(case.create_sql)
    scan_cur = ws.ctx.warehouse.cursor() if source else None

    def raw_side() -> dict[str, Sample]:
        # "total" is the library's fit alone (the matrix is built before timing); "scan" is
        # what a library user also pays to get the training rows out of the warehouse.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start, cpu = time.perf_counter(), time.process_time()
            if scan_cur is not None:
                scan_cur.sql(f"SELECT * FROM {source}").to_arrow_table()
            mid, mid_cpu = time.perf_counter(), time.process_time()
            state["fitted"] = case.raw_fit()
            end, end_cpu = time.perf_counter(), time.process_time()
            out = {
                "total": Sample(end - mid, end_cpu - mid_cpu),
                "scan": Sample(mid - start, mid_cpu - cpu),
                "scan_fit": Sample(end - start, end_cpu - cpu),
            }
            if case.raw_outputs is not None:
                case.raw_outputs(state["fitted"])
                done, done_cpu = time.perf_counter(), time.process_time()
                out["outputs"] = Sample(done - end, done_cpu - end_cpu)
                out["same_outputs"] = Sample(done - start, done_cpu - cpu)
            return out

    def ship_side() -> dict[str, Sample]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {"total": shipyard()}

    aligned = ""
    if case.align is not None:
        # one Shipyard run first, so the raw side can run the same number of iterations
        ship_side()
        aligned = case.align(ws)
        warm = max(0, warm - 1)
        shipyard.runs.clear()
    try:
        series = interleave(
            {"shipyard": ship_side, "raw": raw_side},
            reps=case.train_reps or reps,
            warmup=warm,
            progress=lambda m: log(f"{case.name} CREATE MODEL: {m}"),
        )
    finally:
        if scan_cur is not None:
            scan_cur.close()
    ship, raw = series["shipyard.total"], series["raw.total"]
    timed = shipyard.timed_runs(warm)
    in_run = [t / lib for t, p in timed if (lib := _library_seconds(p, case)) > 0]
    median_total, median_probe = sorted(timed, key=lambda r: r[0])[(len(timed) - 1) // 2]
    result: dict[str, Any] = {
        "name": case.name,
        "raw_label": case.raw_label,
        "note": " ".join(x for x in (case.note, aligned) if x),
        "train": {
            "shipyard": ship.to_dict(),
            "raw": raw.to_dict(),
            "ratio": round(_ratio(ship, raw), 3),
            "best_ratio": round(ship.low / raw.low, 3),
            "in_run": round(statistics.median(in_run), 3) if in_run else None,
            "raw_scan": series["raw.scan"].to_dict() if source else None,
            "ratio_vs_scan_fit": round(_ratio(ship, series["raw.scan_fit"]), 3) if source else None,
            **_same_outputs(ship, series, case.outputs_label),
            "pieces": _pieces(median_total, median_probe, case),
        },
    }
    if case.predict_sql and case.raw_predict is not None:
        cur = ws.ctx.warehouse.cursor()
        fitted = state["fitted"]
        library_predict = case.raw_predict

        def ship_predict() -> dict[str, Sample]:
            start, cpu = time.perf_counter(), time.process_time()
            out = ws.sql(case.predict_sql).to_arrow()
            state["ship_rows"] = out.num_rows
            return {"total": Sample(time.perf_counter() - start, time.process_time() - cpu)}

        def raw_predict() -> dict[str, Sample]:
            start, cpu = time.perf_counter(), time.process_time()
            if case.predict_table:
                cur.sql(f"SELECT * FROM {case.predict_table}").to_arrow_table()
            mid, mid_cpu = time.perf_counter(), time.process_time()
            out = library_predict(fitted)
            end, end_cpu = time.perf_counter(), time.process_time()
            state["raw_rows"] = len(out) if out is not None else 0
            samples = {
                "scan": Sample(mid - start, mid_cpu - cpu),
                "predict": Sample(end - mid, end_cpu - mid_cpu),
                "total": Sample(end - start, end_cpu - cpu),
            }
            if case.raw_predict_outputs is not None:
                case.raw_predict_outputs(fitted, out)
                done, done_cpu = time.perf_counter(), time.process_time()
                samples["outputs"] = Sample(done - end, done_cpu - end_cpu)
                samples["same_outputs"] = Sample(done - start, done_cpu - cpu)
            return samples

        try:
            ps = interleave(
                {"shipyard": ship_predict, "raw": raw_predict},
                reps=predict_reps,
                warmup=1,
                progress=lambda m: log(f"{case.name} predict: {m}"),
            )
        finally:
            cur.close()
        sp, rp = ps["shipyard.total"], ps["raw.total"]
        result["predict"] = {
            "raw_label": case.predict_label,
            "rows": state.get("ship_rows"),
            "shipyard": sp.to_dict(),
            "raw": rp.to_dict(),
            "raw_scan": ps["raw.scan"].to_dict(),
            "raw_predict": ps["raw.predict"].to_dict(),
            "ratio": round(_ratio(sp, rp), 3),
            "best_ratio": round(sp.low / rp.low, 3),
            "ratio_vs_predict_only": round(_ratio(sp, ps["raw.predict"]), 3),
            **_same_outputs(sp, ps, case.predict_outputs_label),
        }
    return result


# --------------------------------------------------------------------------------------------
# data


def _matrix(table: pa.Table, names: list[str], dtype: Any = np.float64) -> np.ndarray:
    out = np.empty((table.num_rows, len(names)), dtype=dtype)
    for j, name in enumerate(names):
        out[:, j] = table.column(name).to_numpy()
    return out


def _label_probs(fitted: Any, probabilities: Any) -> tuple[pa.Array, pa.Array]:
    """A binary classifier's ``predicted_label`` and ``predicted_label_probs`` (an Arrow list of
    ``STRUCT<label, prob>``, both classes) from the library's probabilities: the columns
    ML.PREDICT returns, built by hand (the "vs same" side of prediction)."""
    p = np.asarray(probabilities, dtype=np.float64)
    positive = p[:, 1] if p.ndim == 2 else p
    n = len(positive)
    label = (positive > 0.5).astype(np.int64)
    probs = np.empty((n, 2))
    probs[:, 0], probs[:, 1] = positive, 1.0 - positive
    labels = np.empty((n, 2), dtype=np.int64)
    labels[:, 0], labels[:, 1] = 1, 0
    entries = pa.StructArray.from_arrays(
        [pa.array(labels.reshape(-1)), pa.array(probs.reshape(-1))], names=["label", "prob"]
    )
    offsets = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
    return pa.array(label), pa.ListArray.from_arrays(offsets, entries)


_LABEL_PROBS = "predicted_label + predicted_label_probs as Arrow"


def _tabular(rows: int) -> tuple[pa.Table, pa.Table, list[str]]:
    reg = make_regression_table(rows, COLS)
    y = reg.column("y").to_numpy()
    label = (y > np.median(y)).astype(np.int64)
    cls = reg.drop_columns(["y"]).append_column("label", pa.array(label))
    return reg, cls, [f"x{j}" for j in range(COLS)]


def _ratings(rows: int, seed: int = SEED) -> pa.Table:
    rng = np.random.default_rng(seed)
    users, items, k = max(100, rows // 50), max(50, rows // 200), 8
    uf = rng.normal(0, 1, (users, k))
    itf = rng.normal(0, 1, (items, k))
    pairs = np.unique(
        rng.integers(0, users, rows * 11 // 10) * items + rng.integers(0, items, rows * 11 // 10)
    )
    pairs = rng.permutation(pairs)[:rows]
    u, i = pairs // items, pairs % items
    r = 3.0 + np.einsum("ij,ij->i", uf[u], itf[i]) / 3 + rng.normal(0, 0.5, len(u))
    r = np.clip(np.round(r * 2) / 2, 0.5, 5.0)
    return pa.table({"user_id": u.astype(np.int64), "item_id": i.astype(np.int64), "rating": r})


def _series(count: int, points: int, seed: int = SEED) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = np.arange(points)
    ids, days, values = [], [], []
    start = np.datetime64("2025-01-01", "D")
    for s in range(count):
        base, slope, amp = rng.uniform(10, 100), rng.normal(0, 0.2), rng.uniform(0, 5)
        y = base + slope * t + amp * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, points)
        ids.append(np.full(points, s))
        days.append(start + t)
        values.append(y)
    return pa.table(
        {
            "series_id": pa.array(np.concatenate(ids).astype(np.int64)),
            "day": pa.array(np.concatenate(days)),
            "value": pa.array(np.concatenate(values)),
        }
    )


# --------------------------------------------------------------------------------------------
# the cases


def _iterations(ws: Any, model: str) -> int:
    out = ws.sql(f"SELECT count(*) AS n FROM ML.TRAINING_INFO(MODEL {model})").to_arrow()
    return int(out.column("n")[0].as_py())


def build_cases(ws: Any, quick: bool, log: Log) -> list[Case]:
    pick = 1 if quick else 0
    n_tab, n_forest, n_nn = (SIZES[k][pick] for k in ("tabular", "forest", "neural"))
    n_ratings = SIZES["ratings"][pick]
    n_series, n_auto = SIZES["arima_series"][pick], SIZES["arima_auto_series"][pick]
    cases: list[Case] = []

    log(f"tabular data: {n_tab:,} x {COLS} (forests {n_forest:,}, neural {n_nn:,}); loading")
    reg, cls, feats = _tabular(n_tab)
    ws.load_table("bench.reg", reg)
    ws.load_table("bench.cls", cls)
    ws.load_table("bench.reg_small", reg.slice(0, n_forest))
    ws.load_table("bench.cls_small", cls.slice(0, n_forest))
    ws.load_table("bench.reg_nn", reg.slice(0, n_nn))
    ws.load_table("bench.cls_nn", cls.slice(0, n_nn))
    ws.load_table("bench.feat", reg.drop_columns(["y"]))
    ws.load_table("bench.feat_nn", reg.slice(0, n_nn).drop_columns(["y"]))
    x = _matrix(reg, feats)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    y = reg.column("y").to_numpy()
    yc = cls.column("label").to_numpy()
    xs32, ys, ycs = x32[:n_forest], y[:n_forest], yc[:n_forest]
    xn, yn, ycn = x[:n_nn], y[:n_nn], yc[:n_nn]

    def ship(model: str, options: str, source: str) -> str:
        return (
            f"CREATE OR REPLACE MODEL bench.{model} OPTIONS({options}, "
            f"data_split_method='no_split') AS SELECT * FROM {source}"
        )

    def predict(model: str, table: str) -> str:
        return f"SELECT * FROM ML.PREDICT(MODEL bench.{model}, TABLE {table})"

    # ---- LINEAR_REG: sklearn LinearRegression (no regularisation, exact solver)
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from shipyard.sql import least_squares

    cases.append(
        Case(
            "LINEAR_REG",
            ship("lin", "model_type='linear_reg', input_label_cols=['y']", "bench.reg"),
            lambda: LinearRegression().fit(x, y),
            "LinearRegression().fit",
            # Shipyard fits the same estimator through sql/least_squares.py (normal equations
            # when well-conditioned, scikit-learn's gelsd otherwise): the library's time in-run
            [(least_squares, "fit_linear_regression", "least_squares.fit_linear_regression")],
            predict("lin", "bench.reg"),
            '"bench"."reg"',
            lambda m: m.predict(x),
            "LinearRegression.predict",
        )
    )
    # ---- LOGISTIC_REG: lbfgs, C=inf (l2_reg 0), max_iter 50 * max_iterations (20)
    cases.append(
        Case(
            "LOGISTIC_REG",
            ship("logit", "model_type='logistic_reg', input_label_cols=['label']", "bench.cls"),
            lambda: LogisticRegression(C=np.inf, l1_ratio=0.0, solver="lbfgs", max_iter=1000).fit(
                x, yc
            ),
            "LogisticRegression(C=inf, lbfgs, max_iter=1000).fit",
            [(LogisticRegression, "fit", "LogisticRegression.fit")],
            predict("logit", "bench.cls"),
            '"bench"."cls"',
            lambda m: m.predict_proba(x),
            "LogisticRegression.predict_proba",
            raw_predict_outputs=_label_probs,
            predict_outputs_label=_LABEL_PROBS,
        )
    )
    # ---- XGBoost types: the parameters Shipyard gives (training.xgb_params)
    import xgboost as xgb

    from shipyard.sql import training

    def xgb_case(
        name: str, extra: dict[str, Any], source: str, xm: np.ndarray, ym: np.ndarray
    ) -> Case:
        task = "regression" if name.endswith("REGRESSOR") else "binary_classification"
        options = modeltypes.model_type_spec(name).parse_options({"model_type": name, **extra})
        params = training.xgb_params(options, task, 0 if task == "regression" else 2)
        rounds = training.boosting_rounds(options)
        table = source.split(".")[1]
        model = name.lower()
        label = "y" if task == "regression" else "label"
        opts = ", ".join(f"{k}={v}" for k, v in extra.items()).replace("False", "false")

        def fit() -> Any:
            return xgb.train(
                params, xgb.DMatrix(xm, label=ym, nthread=params["nthread"]), num_boost_round=rounds
            )

        shown = "rounds" if rounds > 1 else f"round of {params['num_parallel_tree']} trees"
        return Case(
            name,
            ship(model, f"model_type='{name}', input_label_cols=['{label}'], {opts}", source),
            fit,
            f"DMatrix + xgboost.train ({rounds} {shown}, depth {params['max_depth']}, same params)",
            [(xgb, "DMatrix", "xgboost.DMatrix"), (xgb, "train", "xgboost.train")],
            predict(model, source),
            f'"bench"."{table}"',
            lambda b: b.inplace_predict(xm),
            "Booster.inplace_predict",
            raw_predict_outputs=None if task == "regression" else _label_probs,
            predict_outputs_label="" if task == "regression" else _LABEL_PROBS,
        )

    boosted = {"early_stop": False, "max_iterations": 20}
    forest = {"num_parallel_tree": 20, "max_tree_depth": 10}
    cases.append(xgb_case("BOOSTED_TREE_REGRESSOR", boosted, "bench.reg", x32, y))
    cases.append(xgb_case("BOOSTED_TREE_CLASSIFIER", boosted, "bench.cls", x32, yc))
    cases.append(xgb_case("RANDOM_FOREST_REGRESSOR", forest, "bench.reg_small", xs32, ys))
    cases.append(xgb_case("RANDOM_FOREST_CLASSIFIER", forest, "bench.cls_small", xs32, ycs))

    # ---- KMEANS: sklearn KMeans (lloyd, k-means++ init, n_init 1) for the iterations Shipyard ran
    import sklearn.cluster
    import sklearn.cluster._k_means_lloyd as lloyd_module
    from sklearn.cluster import KMeans

    km_iters = {"n": 20}

    def km_outputs(km: Any) -> None:
        """ML.EVALUATE's metrics and the anomaly thresholds of a fitted KMeans, by hand."""
        from sklearn.metrics import davies_bouldin_score

        d = km.transform(x)
        labels = np.argmin(d, axis=1)
        nearest = d[np.arange(len(d)), labels]
        davies_bouldin_score(x, labels)
        float(np.mean(nearest**2))  # mean_squared_distance
        k = d.shape[1]
        rms = np.sqrt(
            np.bincount(labels, nearest**2, k) / np.maximum(np.bincount(labels, None, k), 1)
        )
        np.quantile(nearest / np.where(rms > 0, rms, 1.0)[labels], _QUANTILE_POINTS)

    def nearest_centroids(km: Any, d: np.ndarray) -> pa.Array:
        """CENTROID_ID and NEAREST_CENTROIDS_DISTANCE from KMeans.transform's distances."""
        n, k = d.shape
        order = np.argsort(d, axis=1, kind="stable")
        entries = pa.StructArray.from_arrays(
            [
                pa.array(order.reshape(-1) + 1),
                pa.array(np.take_along_axis(d, order, 1).reshape(-1)),
            ],
            names=["CENTROID_ID", "DISTANCE"],
        )
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, entries)

    def km_align(ws_: Any) -> str:
        km_iters["n"] = _iterations(ws_, "bench.km")
        return f"(raw KMeans max_iter={km_iters['n']}, tol=0: the iterations Shipyard ran)"

    cases.append(
        Case(
            "KMEANS",
            "CREATE OR REPLACE MODEL bench.km OPTIONS(model_type='kmeans', num_clusters=8, "
            "kmeans_init_method='kmeans++', early_stop=false) AS SELECT * FROM bench.feat",
            lambda: KMeans(
                8,
                init="k-means++",
                n_init=1,
                max_iter=km_iters["n"],
                tol=0.0,
                algorithm="lloyd",
                random_state=_SHIPYARD_SEED,
            ).fit(x),
            "KMeans(8, k-means++, n_init=1, lloyd).fit",
            [
                (KMeans, "fit", "KMeans.fit"),
                (sklearn.cluster, "kmeans_plusplus", "kmeans_plusplus (init)"),
                # Shipyard runs scikit-learn's Lloyd step itself (one call per iteration)
                (
                    lloyd_module,
                    "lloyd_iter_chunked_dense",
                    "Lloyd steps (lloyd_iter_chunked_dense)",
                ),
            ],
            predict("km", "bench.feat"),
            '"bench"."feat"',
            lambda m: m.transform(x),
            "KMeans.transform (distances to every centroid)",
            note="Shipyard runs scikit-learn's Lloyd step itself, plus each iteration's loss "
            "and cluster sizes/radii (ML.TRAINING_INFO), then ML.EVALUATE's metrics and the "
            "anomaly statistics.",
            align=km_align,
            raw_outputs=km_outputs,
            outputs_label="davies_bouldin_score, mean squared distance, anomaly quantiles",
            raw_predict_outputs=nearest_centroids,
            predict_outputs_label="argsort + NEAREST_CENTROIDS_DISTANCE as Arrow",
        )
    )
    # ---- PCA: sklearn PCA(n_components=5, svd_solver auto)
    from sklearn.decomposition import PCA

    def pca_outputs(model: Any) -> None:
        """ML.EVALUATE's metric, the training loss and the anomaly thresholds, by hand."""
        errors = np.mean((x - model.inverse_transform(model.transform(x))) ** 2, axis=1)
        np.quantile(errors, _QUANTILE_POINTS)
        float(np.sum(model.explained_variance_ratio_))

    cases.append(
        Case(
            "PCA",
            "CREATE OR REPLACE MODEL bench.pca OPTIONS(model_type='pca', "
            "num_principal_components=5) AS SELECT * FROM bench.feat",
            lambda: PCA(n_components=5, svd_solver="auto", random_state=_SHIPYARD_SEED).fit(x),
            "PCA(5, svd_solver='auto').fit",
            [(PCA, "fit", "PCA.fit")],
            predict("pca", "bench.feat"),
            '"bench"."feat"',
            lambda m: m.transform(x),
            "PCA.transform",
            raw_outputs=pca_outputs,
            outputs_label="reconstruction errors + anomaly quantiles, explained variance",
        )
    )

    # ---- DNN / AUTOENCODER: the same network, Adam, batch 1024, 10 epochs, plain PyTorch loop
    try:
        import torch
        from torch import nn

        have_torch = True
    except ImportError:
        have_torch = False
        log("torch is not importable: DNN_* and AUTOENCODER skipped")
    if have_torch:
        import shipyard.sql.autoencoder as autoencoder_module
        import shipyard.sql.dnn as dnn_module

        epochs, hidden = 10, [64, 32]

        def mlp(widths: list[int]) -> Any:
            layers: list[Any] = []
            for a, b in itertools.pairwise(widths[:-1]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            layers.append(nn.Linear(widths[-2], widths[-1]))
            return nn.Sequential(*layers)

        def torch_fit(xm: np.ndarray, target: np.ndarray, widths: list[int], loss: Any) -> Any:
            torch.manual_seed(_SHIPYARD_SEED)
            net = mlp(widths)
            xt = torch.from_numpy(np.ascontiguousarray(xm, dtype=np.float32))
            yt = torch.from_numpy(np.ascontiguousarray(target))
            opt = torch.optim.Adam(net.parameters(), lr=0.001)
            gen = torch.Generator().manual_seed(_SHIPYARD_SEED)
            size = min(1024, len(xm))
            work = size * sum(p.numel() for p in net.parameters())
            before = torch.get_num_threads()
            if work < dnn_module._ONE_THREAD_WORK:  # the same thread rule as Shipyard
                torch.set_num_threads(1)
            try:
                for _ in range(epochs):
                    order = torch.randperm(len(xm), generator=gen)
                    for lo in range(0, len(xm), size):
                        idx = order[lo : lo + size]
                        objective = loss(net(xt[idx]), yt[idx])
                        opt.zero_grad()
                        objective.backward()
                        opt.step()
            finally:
                torch.set_num_threads(before)
            net.eval()
            return net

        def forward(net: Any, xm: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return net(torch.from_numpy(np.ascontiguousarray(xm, dtype=np.float32))).numpy()

        mse = nn.MSELoss()
        yn_std = ((yn - yn.mean()) / yn.std()).astype(np.float32)
        units = (  # batch 1024 as the PyTorch loop (Shipyard's default is BigQuery ML's 32)
            f"hidden_units=[{', '.join(map(str, hidden))}], max_iterations={epochs}, "
            "batch_size=1024"
        )
        fit_probe = [(dnn_module, "fit_network", "training loop (dnn.fit_network)")]
        cases.append(
            Case(
                "DNN_REGRESSOR",
                ship(
                    "dnnr",
                    f"model_type='dnn_regressor', input_label_cols=['y'], {units}",
                    "bench.reg_nn",
                ),
                lambda: torch_fit(xn, yn_std, [COLS, *hidden, 1], lambda o, t: mse(o[:, 0], t)),
                f"PyTorch loop: {COLS}-64-32-1, Adam 0.001, batch 1024, {epochs} epochs",
                fit_probe,
                predict("dnnr", "bench.reg_nn"),
                '"bench"."reg_nn"',
                lambda net: forward(net, xn),
                "torch forward (no_grad)",
                note="Shipyard also keeps each epoch's mean batch loss (ML.TRAINING_INFO).",
            )
        )
        ce = nn.CrossEntropyLoss()
        cases.append(
            Case(
                "DNN_CLASSIFIER",
                ship(
                    "dnnc",
                    f"model_type='dnn_classifier', input_label_cols=['label'], {units}",
                    "bench.cls_nn",
                ),
                lambda: torch_fit(xn, ycn.astype(np.int64), [COLS, *hidden, 2], ce),
                f"PyTorch loop: {COLS}-64-32-2, Adam 0.001, batch 1024, {epochs} epochs",
                fit_probe,
                predict("dnnc", "bench.cls_nn"),
                '"bench"."cls_nn"',
                lambda net: torch.softmax(torch.from_numpy(forward(net, xn)), dim=1).numpy(),
                "torch forward + softmax",
                raw_predict_outputs=_label_probs,
                predict_outputs_label=_LABEL_PROBS,
                note="Shipyard also keeps each epoch's mean batch loss (ML.TRAINING_INFO).",
            )
        )
        ae_hidden = [16, 5, 16]
        xn_std = ((xn - xn.mean(axis=0)) / xn.std(axis=0)).astype(np.float32)

        def ae_encode(net: Any) -> np.ndarray:
            encoder = net[:4]  # Linear, ReLU, Linear(→5), ReLU: the latent activations
            with torch.no_grad():
                return encoder(torch.from_numpy(np.ascontiguousarray(xn, dtype=np.float32))).numpy()

        def ae_outputs(net: Any) -> None:
            """ML.EVALUATE's metrics and the anomaly thresholds of the training rows, by hand."""
            restored = forward(net, xn_std).astype(np.float64)
            errors = np.mean((xn_std - restored) ** 2, axis=1)
            float(np.mean(np.abs(xn_std - restored)))  # mean_absolute_error
            float(np.mean(errors))  # mean_squared_error
            np.quantile(errors, _QUANTILE_POINTS)

        cases.append(
            Case(
                "AUTOENCODER",
                f"CREATE OR REPLACE MODEL bench.ae OPTIONS(model_type='autoencoder', "
                f"hidden_units=[16, 5, 16], max_iterations={epochs}, batch_size=1024, "
                f"data_split_method='no_split') AS SELECT * FROM bench.feat_nn",
                lambda: torch_fit(xn_std, xn_std, [COLS, *ae_hidden, COLS], mse),
                f"PyTorch loop: {COLS}-16-5-16-{COLS}, Adam 0.001, batch 1024, {epochs} epochs",
                [(autoencoder_module, "fit_network", "training loop (dnn.fit_network)")],
                predict("ae", "bench.feat_nn"),
                '"bench"."feat_nn"',
                ae_encode,
                "torch encoder forward (latent)",
                raw_outputs=ae_outputs,
                outputs_label="reconstruction errors, ML.EVALUATE's errors, anomaly quantiles",
                note="Shipyard also keeps each epoch's mean batch loss and computes the per-row "
                "reconstruction errors (ML.EVALUATE, anomaly quantiles).",
            )
        )

    # ---- MATRIX_FACTORIZATION
    import scipy.sparse as sp

    import shipyard.sql.recommend as recommend

    log(f"ratings: {n_ratings:,}; loading")
    ratings = _ratings(n_ratings)
    ws.load_table("bench.ratings", ratings)
    ws.load_table("bench.pairs", ratings.select(["user_id", "item_id"]))
    users = ratings.column("user_id").to_numpy()
    items = ratings.column("item_id").to_numpy()
    rvals = ratings.column("rating").to_numpy()
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    factors, sweeps = 10, 10
    mf_opts = f"num_factors={factors}, max_iterations={sweeps}, early_stop=false, l2_reg=1.0"

    def explicit_raw() -> Any:
        model, _ = recommend.explicit_als(
            users,
            items,
            rvals,
            shape,
            factors=factors,
            l2_reg=1.0,
            max_iterations=sweeps,
            early_stop=False,
            min_rel_progress=0.01,
            report=lambda f, m: None,
        )
        return model

    def explicit_predict(model: Any) -> np.ndarray:
        return (
            np.einsum("ij,ij->i", model.user_factors[users], model.item_factors[items])
            + model.user_bias[users]
            + model.item_bias[items]
            + model.intercept
        )

    recommend_sql = "SELECT * FROM ML.RECOMMEND(MODEL bench.{m}, TABLE bench.pairs)"
    cases.append(
        Case(
            "MATRIX_FACTORIZATION (explicit)",
            f"CREATE OR REPLACE MODEL bench.mfe OPTIONS(model_type='matrix_factorization', "
            f"user_col='user_id', item_col='item_id', rating_col='rating', {mf_opts}, "
            f"data_split_method='no_split') AS SELECT user_id, item_id, rating FROM bench.ratings",
            explicit_raw,
            f"recommend.explicit_als (NumPy ALS), {factors} factors, {sweeps} sweeps",
            [(recommend, "explicit_als", "explicit_als (NumPy ALS)")],
            recommend_sql.format(m="mfe"),
            '"bench"."pairs"',
            explicit_predict,
            "factor dot products + biases (NumPy)",
            note="The raw side is Shipyard's own ALS (no library offers explicit ALS with biases).",
        )
    )
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.evaluation import ranking_metrics_at_k
        from threadpoolctl import threadpool_limits
    except ImportError:
        AlternatingLeastSquares = None
        log("implicit is not importable: MATRIX_FACTORIZATION (implicit) skipped")
    if AlternatingLeastSquares is not None:
        summed = sp.csr_matrix((rvals, (users, items)), shape=shape)
        summed.sum_duplicates()
        conf = summed.astype(np.float32)
        conf.data = (1.0 + 40.0 * summed.data).astype(np.float32)
        no_items = sp.csr_matrix(shape, dtype=np.float32)  # nothing excluded from the ranking

        def implicit_raw() -> Any:
            with threadpool_limits(1, "blas"):
                model = AlternatingLeastSquares(
                    factors=factors,
                    regularization=1.0,
                    alpha=1.0,
                    iterations=sweeps,
                    calculate_training_loss=False,
                    random_state=_SHIPYARD_SEED,
                )
                model.fit(conf, show_progress=False)
            return model

        def implicit_metrics(model: Any) -> None:
            """The ranking metrics over every item (implicit's own evaluation; no MSE)."""
            with threadpool_limits(1, "blas"):
                ranking_metrics_at_k(
                    model, no_items, conf, K=shape[1], show_progress=False, num_threads=0
                )

        def implicit_predict(model: Any) -> np.ndarray:
            uf = np.asarray(model.user_factors, dtype=np.float64)
            itf = np.asarray(model.item_factors, dtype=np.float64)
            return np.einsum("ij,ij->i", uf[users], itf[items])

        cases.append(
            Case(
                "MATRIX_FACTORIZATION (implicit)",
                f"CREATE OR REPLACE MODEL bench.mfi OPTIONS(model_type='matrix_factorization', "
                f"feedback_type='implicit', user_col='user_id', item_col='item_id', "
                f"rating_col='rating', {mf_opts}, data_split_method='no_split') "
                f"AS SELECT user_id, item_id, rating FROM bench.ratings",
                implicit_raw,
                f"implicit AlternatingLeastSquares({factors} factors, {sweeps} iterations).fit",
                [(AlternatingLeastSquares, "fit", "implicit ALS.fit")],
                recommend_sql.format(m="mfi"),
                '"bench"."pairs"',
                implicit_predict,
                "factor dot products (NumPy)",
                note="Shipyard calls fit() once with calculate_training_loss=True and reads "
                "each sweep's loss through its callback (ML.TRAINING_INFO's loss per sweep); "
                "the library side computes no loss.",
                raw_outputs=implicit_metrics,
                outputs_label="implicit.evaluation.ranking_metrics_at_k over every item",
            )
        )

    # ---- ARIMA_PLUS: statsforecast's StatsForecast API (n_jobs=1: Shipyard fits in turn)
    try:
        import pandas as pd
        from statsforecast import StatsForecast
        from statsforecast import arima as sf_arima
        from statsforecast.models import ARIMA, AutoARIMA
    except ImportError:
        StatsForecast = None
        log("statsforecast is not importable: ARIMA_PLUS skipped")
    if StatsForecast is not None:

        def arima_case(
            name: str, count: int, points: int, opts: str, model: Any, label: str
        ) -> Case:
            table = _series(count, points)
            key = "arima_auto" if "auto_arima=true" in opts else "arima"
            ws.load_table(f"bench.{key}", table)
            frame = pd.DataFrame(
                {
                    "unique_id": table.column("series_id").to_numpy(),
                    "ds": pd.to_datetime(table.column("day").to_numpy()),
                    "y": table.column("value").to_numpy(),
                }
            )
            create = (
                f"CREATE OR REPLACE MODEL bench.{key} OPTIONS(model_type='arima_plus', "
                f"time_series_timestamp_col='day', time_series_data_col='value', "
                f"time_series_id_col='series_id', horizon={ARIMA_HORIZON}, "
                f"clean_spikes_and_dips=false, {opts}) AS SELECT * FROM bench.{key}"
            )

            def fit() -> Any:
                return StatsForecast(models=[model], freq="D", n_jobs=1).fit(frame)

            small = table.filter(pc.less(table.column("series_id"), 3))

            def prewarm() -> None:  # numba compiles statsforecast's kernels on first use
                ws.load_table(f"bench.{key}_warm", small)
                ws.sql(
                    create.replace(f"bench.{key} ", f"bench.{key}_w ").replace(
                        f"FROM bench.{key}", f"FROM bench.{key}_warm"
                    )
                )
                StatsForecast(models=[model], freq="D", n_jobs=1).fit(frame.head(3 * points))

            return Case(
                name,
                create,
                fit,
                f"StatsForecast([{label}], freq='D', n_jobs=1).fit",
                [
                    (sf_arima, "auto_arima_f", "statsforecast auto_arima_f"),
                    (sf_arima, "Arima", "statsforecast Arima"),
                ],
                f"SELECT * FROM ML.FORECAST(MODEL bench.{key}, "
                f"STRUCT({ARIMA_HORIZON} AS horizon, 0.95 AS confidence_level))",
                None,
                lambda sf: sf.predict(h=ARIMA_HORIZON, level=[95]),
                f"StatsForecast.predict(h={ARIMA_HORIZON}, level=[95])",
                note=f"{count:,} daily series x {points} points; spike cleaning off on Shipyard's "
                "side (the library has none).",
                train_reps=2,
                warmup=0,
                prewarm=prewarm,
            )

        cases.append(
            arima_case(
                f"ARIMA_PLUS, {n_series:,} series, order (1,1,1)",
                n_series,
                ARIMA_POINTS,
                "auto_arima=false, non_seasonal_order=(1, 1, 1)",
                ARIMA(order=(1, 1, 1), include_mean=True, include_drift=False, method="CSS-ML"),
                "ARIMA(order=(1,1,1))",
            )
        )
        cases.append(
            arima_case(
                f"ARIMA_PLUS, {n_auto:,} series, auto.ARIMA",
                n_auto,
                ARIMA_AUTO_POINTS,
                "auto_arima=true",
                AutoARIMA(season_length=7),
                "AutoARIMA(season_length=7)",
            )
        )
    return cases


# --------------------------------------------------------------------------------------------
# entry points


def bench_models(
    ws: Any,
    *,
    quick: bool,
    reps: int,
    predict_reps: int,
    warmup: int,
    types: str | None,
    log: Log,
) -> dict[str, Any]:
    cases = build_cases(ws, quick, log)
    if types:
        wanted = [t.strip().upper() for t in types.split(",") if t.strip()]
        cases = [c for c in cases if any(c.name.upper().startswith(w) for w in wanted)]
    results = []
    for case in cases:
        log(f"== {case.name}")
        results.append(
            run_case(ws, case, reps=reps, predict_reps=predict_reps, warmup=warmup, log=log)
        )
    return {"quick": quick, "target": TARGET, "cases": results}


def missed(results: dict[str, Any]) -> list[str]:
    """Cases whose median train or predict ratio is above the target (for ``--strict``)."""
    out = []
    for case in results.get("cases", []):
        if case["train"]["ratio"] > TARGET:
            out.append(f"{case['name']} CREATE MODEL")
        if case.get("predict") and case["predict"]["ratio"] > TARGET:
            out.append(f"{case['name']} predict")
    return out


def _flag(ratio: float | None) -> str:
    if ratio is None:
        return ""
    text = f"{ratio:.2f}x"
    return f"[red]{text}[/]" if ratio > TARGET else f"[green]{text}[/]"


def _same(side: dict[str, Any]) -> str:
    ratio = side.get("ratio_vs_same_outputs")
    return "" if ratio is None else f"{ratio:.2f}x"


def print_tables(console: Any, results: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"Model types: Shipyard vs the library directly (target <= {TARGET}x). "
        "Seconds: medians",
        title_justify="left",
    )
    for col in (
        "Model type",
        "CREATE s",
        "lib fit s",
        "Train",
        "best/best",
        "in-run",
        "vs scan+fit",
        "vs same",
        "PREDICT s",
        "scan+pred s",
        "Predict",
        "vs pred only",
        "vs same",
    ):
        table.add_column(col, justify="left" if col == "Model type" else "right", no_wrap=True)
    for case in results["cases"]:
        tr, pr = case["train"], case.get("predict")
        table.add_row(
            case["name"],
            fmt_s(tr["shipyard"]["median_s"]),
            fmt_s(tr["raw"]["median_s"]),
            _flag(tr["ratio"]),
            f"{tr['best_ratio']:.2f}x",
            "" if tr["in_run"] is None else f"{tr['in_run']:.2f}x",
            "" if tr.get("ratio_vs_scan_fit") is None else f"{tr['ratio_vs_scan_fit']:.2f}x",
            _same(tr),
            "" if pr is None else fmt_s(pr["shipyard"]["median_s"]),
            "" if pr is None else fmt_s(pr["raw"]["median_s"]),
            "" if pr is None else _flag(pr["ratio"]),
            "" if pr is None else f"{pr['ratio_vs_predict_only']:.2f}x",
            "" if pr is None else _same(pr),
        )
    console.print(table)
    console.print(
        "[dim]Train = median CREATE MODEL / median library fit on the prebuilt matrix; in-run = "
        "CREATE MODEL / the library's time inside the same run; vs scan+fit = CREATE MODEL / "
        "(DuckDB scan of the training table to Arrow + library fit). Predict = median ML.PREDICT "
        "(to Arrow) / (DuckDB scan to Arrow + library predict on the prebuilt matrix). vs same = "
        "the same against a raw side that also computes, by hand with the library, the outputs "
        "Shipyard returns (ML.EVALUATE's metrics, the anomaly thresholds, the output columns; "
        "listed below).[/]"
    )
    for case in results["cases"]:
        pieces = case["train"]["pieces"]
        total = pieces.get("total", 0.0)
        parts = ", ".join(
            f"{k} {fmt_s(v)}" for k, v in pieces.items() if k != "total" and v >= 0.0005
        )
        console.print(
            f"[bold]{case['name']}[/] vs {case['raw_label']}: CREATE {fmt_s(total)} s = {parts}"
        )
        if case.get("note"):
            console.print(f"  [dim]{case['note']}[/]")
        for side, what in (("train", "CREATE"), ("predict", "PREDICT")):
            part = case.get(side) or {}
            if part.get("outputs_label"):
                console.print(
                    f"  [dim]{what} vs same: the raw side adds {part['outputs_label']} "
                    f"({fmt_s(part['raw_outputs']['median_s'])} s)[/]"
                )
