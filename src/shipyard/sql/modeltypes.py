"""BigQuery ML model types for ``CREATE MODEL``: what each ``model_type`` is and how it trains.

Storage-free: an Arrow table and an options dict in, a :class:`TrainedModel` out. The SQL layer
parses the statement and stores the result; this module only knows about ML.

Supported ``model_type`` values: LINEAR_REG, LOGISTIC_REG (at most 50 classes),
BOOSTED_TREE_CLASSIFIER and RANDOM_FOREST_CLASSIFIER (at most 1,000 classes),
BOOSTED_TREE_REGRESSOR, RANDOM_FOREST_REGRESSOR, and the unsupervised KMEANS
(:mod:`shipyard.sql.clustering`) and PCA (:mod:`shipyard.sql.decomposition`), and
MATRIX_FACTORIZATION (:mod:`shipyard.sql.recommend`). Each is a
:class:`ModelTypeSpec` in :data:`MODEL_TYPES`: its options model (:mod:`shipyard.sql.options`),
its trainer (:mod:`shipyard.sql.training`), its flavor and whether numeric features are
standardized (not for boosted trees, as BigQuery ML). Option names and string enum values are
case-insensitive; defaults are BigQuery ML's.

Evaluation metrics are computed on the evaluation split, or on the training data when there is
none (ML.EVALUATE's rule).

Example::

    >>> import pyarrow as pa
    >>> t = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "label": [2.1, 3.9, 6.2, 7.8]})
    >>> MODEL_TYPES["LINEAR_REG"].train(t, {"model_type": "LINEAR_REG"}).task
    'regression'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.explain import global_explanation
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import MAX_LOGISTIC_CLASSES, FeaturePreprocessor, LabelInfo
from shipyard.sql import coefficients, training
from shipyard.sql.arima import (
    ARIMA_UNSUPPORTED_OPTIONS,
    ArimaPlusOptions,
    ArimaPlusXregOptions,
    train_arima,
)
from shipyard.sql.autoencoder import (
    AUTOENCODER_UNSUPPORTED_OPTIONS,
    AutoencoderOptions,
    train_autoencoder,
)
from shipyard.sql.clustering import train_kmeans
from shipyard.sql.decomposition import train_pca
from shipyard.sql.dnn import (
    DNN_UNSUPPORTED_OPTIONS,
    DnnClassifierOptions,
    DnnRegressorOptions,
    WideDeepClassifierOptions,
    WideDeepRegressorOptions,
    train_dnn,
)
from shipyard.sql.evaluation import ScoreOrder, evaluate
from shipyard.sql.inspection import evaluation_curves
from shipyard.sql.options import (
    BOOSTED_TREE_UNSUPPORTED_OPTIONS,
    CATEGORY_ENCODINGS,
    GLM_UNSUPPORTED_OPTIONS,
    KMEANS_UNSUPPORTED_OPTIONS,
    PCA_UNSUPPORTED_OPTIONS,
    BaseOptions,
    BoostedTreeClassifierOptions,
    BoostedTreeRegressorOptions,
    KMeansOptions,
    LinearRegOptions,
    LogisticRegOptions,
    ModelOptions,
    PcaOptions,
    RandomForestClassifierOptions,
    RandomForestRegressorOptions,
    option_names,
    validate_options,
)
from shipyard.sql.recommend import (
    MF_UNSUPPORTED_OPTIONS,
    MatrixFactorizationOptions,
    train_matrix_factorization,
)
from shipyard.sql.target_encoding import encoding_target
from shipyard.sql.training import (
    Progress,
    Trainer,
    UnsupervisedFit,
    train_linear,
    train_logistic,
    train_xgboost,
)

__all__ = [
    "MAX_BOOSTED_TREE_CLASSES",
    "MODEL_TYPES",
    "BoostedTreeClassifierOptions",
    "BoostedTreeRegressorOptions",
    "KMeansOptions",
    "LinearRegOptions",
    "LogisticRegOptions",
    "ModelOptions",
    "ModelTypeSpec",
    "PcaOptions",
    "Progress",
    "RandomForestClassifierOptions",
    "RandomForestRegressorOptions",
    "TrainedModel",
    "model_type_spec",
    "parse_options",
]

# The steps ModelTypeSpec.train calls, looked up here at call time so that benchmarks can wrap
# them with timers (benchmarks/bench_sql.py).
_prepare = training.prepare_data
_split = training.split_rows
_xgb_params = training.xgb_params


# --------------------------------------------------------------------------------------------
# the trained model


@dataclass
class TrainedModel:
    """What CREATE MODEL produced: the model, its preprocessing and its training record."""

    model_type: str
    task: str  # "regression" | "binary_classification" | "multiclass_classification"
    flavor: str
    model: Any
    preprocessor: FeaturePreprocessor
    label_info: LabelInfo | None
    label: str
    feature_names: list[str]
    options: dict[str, Any]
    training_info: list[dict[str, Any]]
    eval_metrics: dict[str, float | None]
    data_split: dict[str, Any] = field(default_factory=dict)
    predictor_config: dict[str, Any] = field(default_factory=dict)
    # ML.GLOBAL_EXPLAIN (enable_global_explain) and ML.CONFUSION_MATRIX/ROC_CURVE without input
    global_explain: dict[str, Any] | None = None
    evaluation_curves: dict[str, Any] | None = None

    def predictor(self) -> Predictor:
        return Predictor(
            self.task,
            self.model,
            self.flavor,
            self.preprocessor,
            self.label_info,
            self.label,
            dict(self.predictor_config),
        )


# --------------------------------------------------------------------------------------------
# model types


def _no_progress(fraction: float, message: str) -> None:
    return None


@dataclass(frozen=True)
class ModelTypeSpec:
    """One ``model_type``: its options class, task kind, flavor and trainer."""

    name: str
    options_class: type[BaseOptions]
    task_kind: Literal[
        "regression",
        "classification",
        "clustering",
        "dimensionality_reduction",
        "recommendation",
        "forecasting",
    ]
    flavor: str
    trainer: Trainer | None
    standardize: bool
    max_classes: int | None = None
    # BigQuery ML options of this type that Shipyard knows but does not implement: name → what.
    unsupported_options: Mapping[str, str] = field(default_factory=dict)
    # Unsupervised types (KMEANS, PCA): the whole training, table and options in.
    unsupervised: Callable[[pa.Table, Any, Progress, Predictor | None], UnsupervisedFit] | None = (
        None
    )

    @property
    def option_names(self) -> list[str]:
        return option_names(self.options_class)

    def parse_options(self, raw: Mapping[str, Any]) -> Any:
        """Validate CREATE MODEL options (names case-insensitive) into this type's options."""
        return validate_options(self.options_class, self.name, raw, self.unsupported_options)

    def train(
        self,
        table: pa.Table,
        options: Any,
        *,
        label: str | None = None,
        progress: Progress | None = None,
        warm_start: Predictor | None = None,
    ) -> TrainedModel:
        """Train on ``table``: label = ``label``, else input_label_cols, else column 'label'.

        Every other column (but a CUSTOM/SEQ ``data_split_col``) is a feature. ``warm_start``
        is the model's current version when ``warm_start=TRUE`` (its input columns must be the
        same; see :func:`shipyard.sql.training.check_warm_start`).
        """
        if not isinstance(options, self.options_class):
            if isinstance(options, BaseModel):
                options = options.model_dump(exclude_unset=True)
            options = self.parse_options(options)
        report = progress or _no_progress
        if self.unsupervised is not None:
            return self._train_unsupervised(table, options, report, warm_start)
        assert self.trainer is not None
        report(0.0, "preparing data")
        data = _prepare(
            table,
            options,
            label,
            model_type=self.name,
            task_kind=self.task_kind,
            max_classes=self.max_classes,
        )
        if warm_start is not None:
            training.check_warm_start(self.name, warm_start, data.table, data.features)
        train_idx, eval_idx, split_info = _split(data.table, options)
        matrix_dtype = np.float32 if self.flavor == "xgboost" else np.float64
        # TARGET_ENCODING (trees) learns each category's label mean from the training rows
        target = encoding_target(options, data, eval_idx)
        preprocessor = FeaturePreprocessor.fit(
            data.table,
            data.features,
            standardize=self.standardize,
            categorical_encoding=CATEGORY_ENCODINGS[options.category_encoding_method],
            **target,
            # BigQuery ML: TIMESTAMP features of linear models also one-hot encode their
            # calendar components (_TS_DOM_<col> …); other model types use the Unix seconds.
            timestamp_components=self.name in ("LINEAR_REG", "LOGISTIC_REG"),
        )
        # XGBoost reads a column-major matrix as it reads a row-major one (the same DMatrix,
        # the same booster), and column-major is cheaper to fill (Predictor.matrix)
        layout: Literal["C", "F"] = "F" if self.flavor == "xgboost" else "C"
        matrix = preprocessor.transform(data.table, dtype=matrix_dtype, order=layout)
        weights = training.instance_weights(data.table, options)
        if train_idx is None:
            x, y, x_eval, y_eval = matrix, data.y, None, None
        else:
            x, y = matrix[train_idx], data.y[train_idx]
            x_eval, y_eval = matrix[eval_idx], data.y[eval_idx]
            weights = None if weights is None else weights[train_idx]
        del matrix
        p_values = bool(getattr(options, "calculate_p_values", False))
        if p_values:
            n_classes = data.label_info.n_classes if data.label_info else 0
            coefficients.check_p_value_options(self.name, options, preprocessor, n_classes)
        # DNN trainers (flavor torch) continue from the current version's weights.
        resume = (
            {"warm_start": warm_start} if self.flavor == "torch" and warm_start is not None else {}
        )
        trainer: Any = self.trainer
        fit = trainer(
            x, y, x_eval, y_eval, options, data.label_info, report, sample_weight=weights, **resume
        )
        extra_config: dict[str, Any] = {}
        if p_values:
            report(0.99, "computing standard errors and p-values")
            extra_config[coefficients.CONFIG_KEY] = coefficients.coefficient_statistics(
                fit.model, x, y, options, preprocessor, regression=data.task == "regression"
            )
        predictor = Predictor(
            data.task,
            fit.model,
            self.flavor,
            preprocessor,
            data.label_info,
            data.label,
            {
                "matrix_dtype": "float32" if matrix_dtype is np.float32 else "float64",
                "threshold": 0.5,
                "model_type": self.name,
                **extra_config,
            },
        )
        metric_x, metric_y = (x_eval, y_eval) if x_eval is not None else (x, y)
        assert metric_y is not None and metric_x is not None
        if fit.metric_scores is not None:
            predictions, probabilities = predictor.interpret_scores(fit.metric_scores)
        else:
            predictions, probabilities = predictor.predict_raw(metric_x)
        order = ScoreOrder()  # roc_auc's sorts, reused by the stored ROC curve
        metrics = evaluate(
            data.task,
            metric_y,
            predictions,
            probabilities,
            data.label_info.values() if data.label_info else None,
            order=order,
        )
        curves = evaluation_curves(data.task, metric_y, predictions, probabilities, order)
        global_explain = None
        if getattr(options, "enable_global_explain", False):
            report(0.99, "computing global explanations")
            global_explain = global_explanation(predictor, metric_x)
        report(1.0, "trained")
        return TrainedModel(
            model_type=self.name,
            task=data.task,
            flavor=self.flavor,
            model=fit.model,
            preprocessor=preprocessor,
            label_info=data.label_info,
            label=data.label,
            feature_names=list(data.features),
            options=options.model_dump(mode="json"),
            training_info=fit.training_info,
            eval_metrics=metrics,
            global_explain=global_explain,
            evaluation_curves=curves,
            data_split=split_info,
            predictor_config=dict(predictor.config),
        )

    def _train_unsupervised(
        self, table: pa.Table, options: Any, report: Progress, warm_start: Predictor | None
    ) -> TrainedModel:
        assert self.unsupervised is not None
        report(0.0, "preparing data")
        fit = self.unsupervised(table, options, report, warm_start)
        report(1.0, "trained")
        return TrainedModel(
            model_type=self.name,
            task=fit.task,
            flavor=self.flavor,
            model=fit.model,
            preprocessor=fit.preprocessor,
            label_info=None,
            label="",
            feature_names=list(fit.features),
            options=options.model_dump(mode="json"),
            training_info=fit.training_info,
            eval_metrics=fit.metrics,
            data_split={"method": "NO_SPLIT", "train_rows": table.num_rows, "eval_rows": 0},
            predictor_config=dict(fit.predictor_config),
        )


#: BigQuery ML: a BOOSTED_TREE_CLASSIFIER label has at most 1,000 distinct values.
MAX_BOOSTED_TREE_CLASSES = 1000

MODEL_TYPES: dict[str, ModelTypeSpec] = {
    "LINEAR_REG": ModelTypeSpec(
        "LINEAR_REG",
        LinearRegOptions,
        "regression",
        "sklearn",
        train_linear,
        True,
        unsupported_options=GLM_UNSUPPORTED_OPTIONS,
    ),
    "LOGISTIC_REG": ModelTypeSpec(
        "LOGISTIC_REG",
        LogisticRegOptions,
        "classification",
        "sklearn",
        train_logistic,
        True,
        MAX_LOGISTIC_CLASSES,
        unsupported_options=GLM_UNSUPPORTED_OPTIONS,
    ),
    "BOOSTED_TREE_CLASSIFIER": ModelTypeSpec(
        "BOOSTED_TREE_CLASSIFIER",
        BoostedTreeClassifierOptions,
        "classification",
        "xgboost",
        train_xgboost,
        False,
        MAX_BOOSTED_TREE_CLASSES,
        unsupported_options=BOOSTED_TREE_UNSUPPORTED_OPTIONS,
    ),
    "BOOSTED_TREE_REGRESSOR": ModelTypeSpec(
        "BOOSTED_TREE_REGRESSOR",
        BoostedTreeRegressorOptions,
        "regression",
        "xgboost",
        train_xgboost,
        False,
        unsupported_options=BOOSTED_TREE_UNSUPPORTED_OPTIONS,
    ),
    "RANDOM_FOREST_CLASSIFIER": ModelTypeSpec(
        "RANDOM_FOREST_CLASSIFIER",
        RandomForestClassifierOptions,
        "classification",
        "xgboost",
        train_xgboost,
        False,
        MAX_BOOSTED_TREE_CLASSES,
        unsupported_options=BOOSTED_TREE_UNSUPPORTED_OPTIONS,
    ),
    "RANDOM_FOREST_REGRESSOR": ModelTypeSpec(
        "RANDOM_FOREST_REGRESSOR",
        RandomForestRegressorOptions,
        "regression",
        "xgboost",
        train_xgboost,
        False,
        unsupported_options=BOOSTED_TREE_UNSUPPORTED_OPTIONS,
    ),
    "KMEANS": ModelTypeSpec(
        "KMEANS",
        KMeansOptions,
        "clustering",
        "sklearn",
        None,
        True,
        unsupported_options=KMEANS_UNSUPPORTED_OPTIONS,
        unsupervised=train_kmeans,
    ),
    "PCA": ModelTypeSpec(
        "PCA",
        PcaOptions,
        "dimensionality_reduction",
        "sklearn",
        None,
        True,
        unsupported_options=PCA_UNSUPPORTED_OPTIONS,
        unsupervised=train_pca,
    ),
    # DNN_* and DNN_LINEAR_COMBINED_* (PyTorch, shipyard.sql.dnn) and AUTOENCODER
    # (shipyard.sql.autoencoder): flavor torch, prediction in NumPy
    "DNN_CLASSIFIER": ModelTypeSpec(
        "DNN_CLASSIFIER",
        DnnClassifierOptions,
        "classification",
        "torch",
        train_dnn,
        True,
        MAX_BOOSTED_TREE_CLASSES,
        unsupported_options=DNN_UNSUPPORTED_OPTIONS,
    ),
    "DNN_REGRESSOR": ModelTypeSpec(
        "DNN_REGRESSOR",
        DnnRegressorOptions,
        "regression",
        "torch",
        train_dnn,
        True,
        unsupported_options=DNN_UNSUPPORTED_OPTIONS,
    ),
    "DNN_LINEAR_COMBINED_CLASSIFIER": ModelTypeSpec(
        "DNN_LINEAR_COMBINED_CLASSIFIER",
        WideDeepClassifierOptions,
        "classification",
        "torch",
        train_dnn,
        True,
        MAX_BOOSTED_TREE_CLASSES,
        unsupported_options=DNN_UNSUPPORTED_OPTIONS,
    ),
    "DNN_LINEAR_COMBINED_REGRESSOR": ModelTypeSpec(
        "DNN_LINEAR_COMBINED_REGRESSOR",
        WideDeepRegressorOptions,
        "regression",
        "torch",
        train_dnn,
        True,
        unsupported_options=DNN_UNSUPPORTED_OPTIONS,
    ),
    "AUTOENCODER": ModelTypeSpec(
        "AUTOENCODER",
        AutoencoderOptions,
        "dimensionality_reduction",
        "torch",
        None,
        True,
        unsupported_options=AUTOENCODER_UNSUPPORTED_OPTIONS,
        unsupervised=train_autoencoder,
    ),
    # MATRIX_FACTORIZATION (shipyard.sql.recommend): explicit ALS in NumPy, implicit ALS with
    # the implicit library; flavor factorization (Parquet id mappings and .npy factors)
    "MATRIX_FACTORIZATION": ModelTypeSpec(
        "MATRIX_FACTORIZATION",
        MatrixFactorizationOptions,
        "recommendation",
        "factorization",
        None,
        False,
        unsupported_options=MF_UNSUPPORTED_OPTIONS,
        unsupervised=train_matrix_factorization,
    ),
    # ARIMA_PLUS and ARIMA_PLUS_XREG (shipyard.sql.arima): statsforecast's ARIMA, one per
    # time series; flavor statsforecast (the fitted ARIMA as JSON)
    "ARIMA_PLUS": ModelTypeSpec(
        "ARIMA_PLUS",
        ArimaPlusOptions,
        "forecasting",
        "statsforecast",
        None,
        False,
        unsupported_options=ARIMA_UNSUPPORTED_OPTIONS,
        unsupervised=train_arima,
    ),
    "ARIMA_PLUS_XREG": ModelTypeSpec(
        "ARIMA_PLUS_XREG",
        ArimaPlusXregOptions,
        "forecasting",
        "statsforecast",
        None,
        False,
        unsupported_options=ARIMA_UNSUPPORTED_OPTIONS,
        unsupervised=train_arima,
    ),
}


def model_type_spec(model_type: Any) -> ModelTypeSpec:
    """The spec of a ``model_type`` value (case-insensitive)."""
    key = model_type.upper() if isinstance(model_type, str) else model_type
    spec = MODEL_TYPES.get(key) if isinstance(key, str) else None
    if spec is None:
        raise Unsupported(
            f"model_type {model_type!r} is not supported; supported model types: "
            f"{', '.join(MODEL_TYPES)}",
            model_type=model_type,
        )
    return spec


def parse_options(raw: Mapping[str, Any]) -> Any:
    """Validate a CREATE MODEL OPTIONS dict (any model type) into its options model."""
    values = {str(k).lower(): v for k, v in raw.items()}
    if "model_type" not in values:
        raise InvalidArgument(
            f"option 'model_type' is required; supported model types: {', '.join(MODEL_TYPES)}"
        )
    return model_type_spec(values["model_type"]).parse_options(values)
