"""The ML.* table functions: each takes the model, its input rows and its STRUCT parameters and
returns an Arrow table. ``ML_HANDLERS`` maps a function name to its handler; adding a function is
adding an entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument
from shipyard.sql import (
    autoencoder,
    clustering,
    coefficients,
    contribution_analysis,
    data_validation,
    decomposition,
    describe_data,
    explanation,
    features_at_time,
    forecasting,
    inspection,
    recommend,
    transform,
    transform_only,
    tuning,
)
from shipyard.sql.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS, evaluate
from shipyard.warehouse import fetch_arrow

if TYPE_CHECKING:
    import duckdb

    from shipyard.sql.service import SqlService


@dataclass
class MLCall:
    """One ML.<function>(MODEL model, input, STRUCT(params)) call, its input already in Arrow."""

    function: str
    model: str
    input: pa.Table | None
    params: dict[str, Any] = field(default_factory=dict)

    def check_params(self, allowed: dict[str, type | tuple[type, ...]]) -> None:
        check_params(self.function, self.params, allowed)

    def require_input(self) -> pa.Table:
        if self.input is None:
            raise InvalidArgument(
                f"ML.{self.function} needs input rows: ML.{self.function}(MODEL {self.model}, "
                "TABLE dataset.table) or (SELECT …)"
            )
        return self.input


@dataclass
class DataCall:
    """One ML.<function>({TABLE t | (query)}[, …] [, STRUCT(params) | name => value …]) call over
    data, with no model (ML.DESCRIBE_DATA, ML.FEATURES_AT_TIME …).

    ``relations``: each relation's DuckDB SQL, in the order written, to run on ``cursor`` (the
    statement's: a relation may read an ML result registered there). A handler that needs the
    rows reads ``inputs`` (fetched to Arrow once, on first use); one that DuckDB can answer as a
    whole composes its query around ``relations`` and runs it with :meth:`query`.
    """

    function: str
    relations: list[str]
    cursor: duckdb.DuckDBPyConnection
    params: dict[str, Any] = field(default_factory=dict)
    _inputs: list[pa.Table] | None = field(default=None, repr=False)
    _schemas: dict[str, pa.Schema] = field(default_factory=dict, repr=False)

    @property
    def inputs(self) -> list[pa.Table]:
        if self._inputs is None:
            self._inputs = [fetch_arrow(self.cursor, sql) for sql in self.relations]
        return self._inputs

    def check_params(self, allowed: dict[str, type | tuple[type, ...]]) -> None:
        check_params(self.function, self.params, allowed)

    def require_inputs(self, *names: str) -> list[pa.Table]:
        """The relations' rows, one per name in ``names`` (``"base"``, ``"study"``): exactly
        that many relations, or an error that spells the call."""
        self.require_relations(*names)
        return self.inputs

    def require_relations(self, *names: str) -> list[str]:
        """:meth:`require_inputs`, as DuckDB SQL: nothing is fetched."""
        if len(self.relations) != len(names):
            spelt = ", ".join(f"TABLE {n} | (SELECT …)" for n in names)
            raise InvalidArgument(
                f"ML.{self.function} takes {len(names)} relation{'s' if len(names) > 1 else ''}"
                f", got {len(self.relations)}: ML.{self.function}({spelt}[, …])"
            )
        return self.relations

    def schema(self, relation: str) -> pa.Schema:
        """The columns ``relation`` returns, without running it (asked of DuckDB once)."""
        if relation not in self._schemas:
            self._schemas[relation] = self.query(f"SELECT * FROM ({relation}) LIMIT 0").schema
        return self._schemas[relation]

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        return fetch_arrow(self.cursor, sql, params)


def check_params(
    function: str, params: dict[str, Any], allowed: dict[str, type | tuple[type, ...]]
) -> None:
    """Every STRUCT parameter of ``ML.<function>`` is one of ``allowed`` and of its type
    (NULL passes: the function's default)."""
    for key, value in params.items():
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise InvalidArgument(
                f"ML.{function} has no parameter {key!r}; valid parameters: {valid}"
            )
        expected = allowed[key]
        if value is not None and (
            not isinstance(value, expected) or (isinstance(value, bool) and expected is float)
        ):
            raise InvalidArgument(
                f"ML.{function} parameter {key!r} must be {_type_name(expected)}, got {value!r}"
            )


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        bool: "TRUE or FALSE",
        str: "a string",
        dt.datetime: "a TIMESTAMP",
    }
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in types)


def ml_predict(service: SqlService, call: MLCall) -> pa.Table:
    """ML.PREDICT: predicted columns first, then the input columns."""
    call.check_params({"threshold": (int, float), "keep_original_columns": bool})
    rows = call.require_input()
    predictor = service.models.load(call.model)
    if predictor.task == "recommendation":  # as BigQuery ML: MATRIX_FACTORIZATION recommends
        raise InvalidArgument(
            f"ML.PREDICT does not apply to model {call.model}, a MATRIX_FACTORIZATION model; "
            f"use ML.RECOMMEND(MODEL {call.model}[, TABLE …])"
        )
    keep = call.params.get("keep_original_columns")
    return predictor.predict(
        rows,
        threshold=call.params.get("threshold"),
        keep_original_columns=predictor.default_keep_original_columns if keep is None else keep,
    )


def ml_evaluate(service: SqlService, call: MLCall) -> pa.Table:
    """ML.EVALUATE: metrics on the given rows, or those computed on the evaluation split."""
    call.check_params({"threshold": (int, float), "perform_aggregation": bool})
    version = service.models.get_version(call.model)
    if version.model_type == "AUTOENCODER":  # reconstruction errors
        return autoencoder.ml_evaluate_autoencoder(service, call, version.metrics)
    if version.task in ("clustering", "dimensionality_reduction"):  # KMEANS, PCA
        return clustering.evaluate_unsupervised(service, call, version.task, version.metrics)
    if version.task == "recommendation":  # MATRIX_FACTORIZATION (shipyard.sql.recommend)
        return recommend.evaluate_matrix_factorization(service, call, version.metrics)
    names = REGRESSION_METRICS if version.task == "regression" else CLASSIFICATION_METRICS
    if call.input is None:
        if call.params.get("threshold") is not None:
            raise InvalidArgument(
                "ML.EVALUATE with a threshold needs the evaluation rows: "
                f"ML.EVALUATE(MODEL {call.model}, TABLE …, STRUCT(0.6 AS threshold))"
            )
        metrics = version.metrics
    else:
        metrics = _evaluate_rows(service, call, version.task)
    return pa.table({name: pa.array([metrics.get(name)], type=pa.float64()) for name in names})


def _evaluate_rows(service: SqlService, call: MLCall, task: str) -> dict[str, Any]:
    rows = call.require_input()
    predictor = service.models.load(call.model)
    label = predictor.label
    if label not in rows.column_names:
        raise InvalidArgument(
            f"ML.EVALUATE needs the label column {label!r} in its input; "
            f"the input has: {', '.join(rows.column_names)}"
        )
    rows = rows.filter(pc.is_valid(rows[label]))  # rows without a label cannot be scored
    matrix = predictor.matrix(rows)
    threshold = call.params.get("threshold")
    predictions, probabilities = predictor.predict_raw(matrix, threshold=threshold)
    if predictor.label_info is None:
        truth = rows[label].to_numpy().astype(np.float64)
        return evaluate(task, truth, predictions, None, None)
    truth_codes = predictor.label_info.encode(rows[label])
    return evaluate(
        task,
        truth_codes,
        predictions,
        probabilities,
        predictor.label_info.values(),
        threshold=threshold,
    )


ML_HANDLERS: dict[str, Callable[[SqlService, MLCall], pa.Table]] = {
    "PREDICT": ml_predict,
    "EVALUATE": ml_evaluate,
    # explainability and model inspection (shipyard.sql.explanation / shipyard.sql.inspection)
    "EXPLAIN_PREDICT": explanation.ml_explain_predict,
    "GLOBAL_EXPLAIN": explanation.ml_global_explain,
    "FEATURE_IMPORTANCE": explanation.ml_feature_importance,
    "FEATURE_INFO": inspection.ml_feature_info,
    "TRAINING_INFO": inspection.ml_training_info,
    "WEIGHTS": partial(recommend.ml_weights, fallback=inspection.ml_weights),  # + MF
    "CONFUSION_MATRIX": inspection.ml_confusion_matrix,
    "ROC_CURVE": inspection.ml_roc_curve,
    # KMEANS and PCA (shipyard.sql.clustering / shipyard.sql.decomposition)
    "CENTROIDS": clustering.ml_centroids,
    # AUTOENCODER models by shipyard.sql.autoencoder, the others by the wrapped handler
    "DETECT_ANOMALIES": autoencoder.detect_anomalies_or(clustering.ml_detect_anomalies),
    "RECONSTRUCTION_LOSS": autoencoder.ml_reconstruction_loss,
    "PRINCIPAL_COMPONENTS": decomposition.ml_principal_components,
    "PRINCIPAL_COMPONENT_INFO": decomposition.ml_principal_component_info,
    "ADVANCED_WEIGHTS": coefficients.ml_advanced_weights,  # calculate_p_values=TRUE
    "RECOMMEND": recommend.ml_recommend,  # MATRIX_FACTORIZATION (shipyard.sql.recommend)
    "TRANSFORM": transform.ml_transform,  # CREATE MODEL … TRANSFORM(…) (shipyard.sql.transform)
    "VALIDATE_DATA_SKEW": data_validation.ml_validate_data_skew,  # (shipyard.sql.data_validation)
}
# hyperparameter tuning (shipyard.sql.tuning): ML.TRIAL_INFO, and STRUCT(… AS trial_id) in
# ML.PREDICT / ML.EVALUATE / ML.EXPLAIN_PREDICT (wrapping the handlers above)
ML_HANDLERS.update(tuning.handlers(ML_HANDLERS))
# ARIMA_PLUS / ARIMA_PLUS_XREG (shipyard.sql.forecasting): ML.FORECAST, ML.EXPLAIN_FORECAST,
# ML.ARIMA_EVALUATE, ML.ARIMA_COEFFICIENTS, ML.HOLIDAY_INFO; wraps PREDICT, EVALUATE and
# DETECT_ANOMALIES
ML_HANDLERS.update(forecasting.handlers(ML_HANDLERS))
# TRANSFORM_ONLY models (shipyard.sql.transform_only): every function but ML.TRANSFORM and
# ML.FEATURE_INFO refuses them, naming those two
ML_HANDLERS.update(transform_only.handlers(ML_HANDLERS))
# CONTRIBUTION_ANALYSIS models (shipyard.sql.contribution_analysis): ML.GET_INSIGHTS; every
# other function refuses them, naming it
ML_HANDLERS["GET_INSIGHTS"] = contribution_analysis.ml_get_insights
ML_HANDLERS.update(contribution_analysis.handlers(ML_HANDLERS))

# Table functions over data, with no MODEL (dialect.ML_DATA_FUNCTIONS): a function name to its
# handler, like ML_HANDLERS.
DATA_HANDLERS: dict[str, Callable[[SqlService, DataCall], pa.Table]] = {
    # point-in-time feature lookups (shipyard.sql.features_at_time)
    "FEATURES_AT_TIME": features_at_time.ml_features_at_time,
    "ENTITY_FEATURES_AT_TIME": features_at_time.ml_entity_features_at_time,
    # descriptive statistics (shipyard.sql.describe_data)
    "DESCRIBE_DATA": describe_data.ml_describe_data,
    "TFDV_DESCRIBE": describe_data.ml_tfdv_describe,
    "VALIDATE_DATA_DRIFT": data_validation.ml_validate_data_drift,  # (shipyard.sql.data_validation)
}
