"""ML.TFDV_VALIDATE: compare two ``DatasetFeatureStatisticsList`` JSON values (ML.TFDV_DESCRIBE's
output, or TFDV's own) and return TensorFlow Metadata's ``Anomalies`` proto as JSON.

It is a scalar function: ``SELECT ML.TFDV_VALIDATE(base, study, 'DRIFT')``. The SQL rewrite
(:mod:`shipyard.sql.preprocessing_functions`) turns the call into the DuckDB Python function
:data:`UDF_NAME` over the row's values (the SQL service registers it on the warehouse), so the
arguments may be literals, scalar subqueries or columns of a table of saved statistics.

The distances are ML.VALIDATE_DATA_DRIFT's (:mod:`shipyard.sql.data_validation`), computed from
the statistics rather than the rows: a numerical feature (``numStats``) compares its STANDARD
histograms (aligned as TFDV's ``AlignHistograms``; NaN and ±inf buckets count in none), a
categorical one (``stringStats``) its rank histogram (else its top values). On the same data,
ML.TFDV_VALIDATE over ML.TFDV_DESCRIBE's statistics gives ML.VALIDATE_DATA_DRIFT's values.

The output follows ``tensorflow_metadata/proto/v0/anomalies.proto`` in proto3 JSON
(lowerCamelCase names, enums by name), as TFDV's ``validate_statistics`` fills it for drift or
skew comparators::

    {"anomalyNameFormat": "SERIALIZED_PATH",
     "anomalyInfo": {"<feature>": {                      # only the anomalous features
         "path": {"step": ["<feature>"]}, "severity": "ERROR",
         "description": "...", "shortDescription": "...",
         "reason": [{"type": "COMPARATOR_L_INFTY_HIGH", "shortDescription", "description"}]}},
     "driftSkewInfo": [{"path": {"step": ["<feature>"]},  # every feature compared
         "driftMeasurements" | "skewMeasurements": [
             {"type": "L_INFTY" | "JENSEN_SHANNON_DIVERGENCE", "value": v, "threshold": t}]}],
     "dataMissing": true}                                 # only when the data has no rows

SKEW compares training (``base_statistics``) with serving (``study_statistics``); DRIFT the
current data (``study_statistics``) with the previous (``base_statistics``); the features
checked are the training (SKEW) or current (DRIFT) data's, and one whose comparison side lacks
it is a ``COMPARATOR_CONTROL_DATA_MISSING`` anomaly, as in TFDV. No schema is inferred or
checked (BigQuery ML's ML.TFDV_VALIDATE does no schema validation either): no ``baseline``
schema in the output, no schema anomalies (missing columns, new values, types).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.errors import InvalidArgument
from shipyard.sql.data_validation import (
    JENSEN_SHANNON,
    L_INFTY,
    Distribution,
    distance,
    largest_share_difference,
    validation_options,
)

__all__ = [
    "DETECTION_TYPES",
    "UDF_NAME",
    "UDF_PARAMETERS",
    "check_arguments",
    "tfdv_validate",
    "tfdv_validate_udf",
]

FUNCTION = "TFDV_VALIDATE"
UDF_NAME = "shipyard_tfdv_validate"
# The DuckDB types of the Python function's arguments, in ML.TFDV_VALIDATE's order (thresholds:
# the ARRAY<STRUCT<STRING, FLOAT64>> as JSON text).
UDF_PARAMETERS = (
    ("base_statistics", "VARCHAR"),
    ("study_statistics", "VARCHAR"),
    ("detection_type", "VARCHAR"),
    ("categorical_default_threshold", "DOUBLE"),
    ("categorical_metric_type", "VARCHAR"),
    ("numerical_default_threshold", "DOUBLE"),
    ("numerical_metric_type", "VARCHAR"),
    ("thresholds", "VARCHAR"),
)
DETECTION_TYPES = ("SKEW", "DRIFT")
_DEFAULT_DETECTION = "SKEW"
# (treatment, control, measurements field) as TFDV names them in its descriptions
_CONTEXT = {
    "SKEW": ("training", "serving", "skewMeasurements"),
    "DRIFT": ("current", "previous", "driftMeasurements"),
}


@dataclass(frozen=True)
class _Feature:
    path: list[str]
    distribution: Distribution | None  # None: a type with no distribution (BYTES, STRUCT)


@dataclass(frozen=True)
class _Statistics:
    num_examples: float
    features: dict[str, _Feature]  # by serialized path, in the statistics' order


def _field(message: dict[str, Any], camel: str) -> Any:
    """A proto field by its JSON name or its proto name (``json_format.Parse`` takes both)."""
    if camel in message:
        return message[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return message.get(snake)


def _number(value: Any, what: str, argument: str) -> float:
    """A double or uint64 field: a JSON number or string (``"12"``, ``"NaN"``, ``"-Infinity"``)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad(argument, f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise _bad(argument, f"{what} must be a number, got {value!r}") from None


def _bad(argument: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"ML.{FUNCTION} {argument} is not a DatasetFeatureStatisticsList in JSON form "
        f"(ML.TFDV_DESCRIBE's output): {reason}",
        parameter=argument,
    )


def _histogram(num_stats: dict[str, Any], argument: str) -> Distribution:
    """A numerical feature's STANDARD histogram (finite buckets only) as a Distribution."""
    for histogram in _field(num_stats, "histograms") or []:
        if (_field(histogram, "type") or "STANDARD") in ("STANDARD", 0):
            break
    else:
        return Distribution.empty(True)
    lows, highs, counts = [], [], []
    for bucket in _field(histogram, "buckets") or []:
        low = _number(_field(bucket, "lowValue"), "a histogram bucket's lowValue", argument)
        high = _number(_field(bucket, "highValue"), "a histogram bucket's highValue", argument)
        count = _number(_field(bucket, "sampleCount"), "a bucket's sampleCount", argument)
        if math.isfinite(low) and math.isfinite(high):  # TFDV's ±inf buckets: left out
            lows.append(low)
            highs.append(high)
            counts.append(count)
    if not counts:
        return Distribution.empty(True)
    low, high = lows[0], highs[-1]
    edges = np.array([low, *highs])
    weights = np.asarray(counts, dtype=np.float64)
    if not high > low:  # every value the same: a point mass
        return Distribution.histogram(low, high, weights.sum(keepdims=True))
    regular = np.linspace(low, high, len(counts) + 1)
    if len(counts) == 1 or np.allclose(edges, regular, rtol=0.0, atol=1e-9 * (high - low)):
        return Distribution.histogram(low, high, weights)  # equal width: the drift's own edges
    if not np.all(np.diff(edges) > 0):  # empty or overlapping buckets: read as equal width
        return Distribution.histogram(low, high, weights)
    return Distribution(True, weights, edges=edges)


def _categories(string_stats: dict[str, Any], argument: str) -> Distribution:
    """A categorical feature's rank histogram (else its top values) as value counts."""
    rank = _field(string_stats, "rankHistogram") or {}
    pairs = [(_field(b, "label"), _field(b, "sampleCount")) for b in _field(rank, "buckets") or []]
    if not pairs:
        pairs = [
            (_field(v, "value"), _field(v, "frequency"))
            for v in _field(string_stats, "topValues") or []
        ]
    merged: dict[str, float] = {}
    for label, count in pairs:
        value = _number(count, "a rank histogram bucket's sampleCount", argument)
        merged[str(label)] = merged.get(str(label), 0.0) + value
    labels = sorted(merged)
    return Distribution(
        False, np.array([merged[v] for v in labels], dtype=np.float64), values=labels
    )


def _parse(text: Any, argument: str) -> _Statistics:
    if isinstance(text, str):
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise _bad(argument, f"not valid JSON ({exc})") from None
    else:
        message = text
    if not isinstance(message, dict) or not isinstance(_field(message, "datasets"), list):
        raise _bad(argument, 'it needs a "datasets" list')
    datasets = _field(message, "datasets")
    if not datasets or not isinstance(datasets[0], dict):
        raise _bad(argument, '"datasets" holds no DatasetFeatureStatistics')
    dataset = datasets[0]  # the default slice: TFDV validates one dataset
    features: dict[str, _Feature] = {}
    for feature in _field(dataset, "features") or []:
        if not isinstance(feature, dict):
            raise _bad(argument, f"a feature must be an object, got {feature!r}")
        path = _field(feature, "path")
        steps = [str(s) for s in (_field(path, "step") or [])] if isinstance(path, dict) else []
        name = _field(feature, "name")
        if name is None and not steps:
            raise _bad(argument, "a feature has neither a name nor a path")
        key = str(name) if name is not None else ".".join(steps)
        num_stats, string_stats = _field(feature, "numStats"), _field(feature, "stringStats")
        if isinstance(num_stats, dict):
            dist: Distribution | None = _histogram(num_stats, argument)
        elif isinstance(string_stats, dict):
            dist = _categories(string_stats, argument)
        else:
            dist = None
        features[key] = _Feature(steps or [key], dist)
    examples = _number(_field(dataset, "numExamples"), "numExamples", argument)
    return _Statistics(examples, features)


def _thresholds(value: Any) -> list[list[Any]] | None:
    """``thresholds`` as the ``[[name, value], …]`` ML.VALIDATE_DATA_DRIFT's checks read: a list
    (or its JSON text) of pairs or of two-field objects (a named STRUCT)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [value]
    if not isinstance(value, list):
        value = [value]
    return [list(item.values()) if isinstance(item, dict) else item for item in value]


def _format(value: float) -> str:
    """absl::SixDigits: six significant digits, as TFDV's descriptions print numbers."""
    return f"{value:.6g}"


def _check_choice(argument: str, value: Any, valid: Sequence[str]) -> str:
    if not isinstance(value, str) or value.upper() not in valid:
        raise InvalidArgument(
            f"ML.{FUNCTION} {argument} {value!r} is not valid; valid values: {', '.join(valid)}",
            parameter=argument,
        )
    return value.upper()


def check_arguments(
    detection_type: str | None = None,
    categorical_default_threshold: float | None = None,
    categorical_metric_type: str | None = None,
    numerical_default_threshold: float | None = None,
    numerical_metric_type: str | None = None,
    thresholds: Any = None,
    *,
    features: Sequence[str] | None = None,
) -> tuple[str, Any]:
    """The detection type and the checked thresholds/metrics; with ``features`` unknown (a
    literal argument checked when the query is rewritten) a threshold may name any column."""
    detection = (
        _DEFAULT_DETECTION
        if detection_type is None
        else _check_choice("detection_type", detection_type, DETECTION_TYPES)
    )
    pairs = _thresholds(thresholds)
    if features is None:
        features = [str(p[0]) for p in pairs or [] if isinstance(p, list) and p]
    params = {
        "categorical_default_threshold": categorical_default_threshold,
        "categorical_metric_type": categorical_metric_type,
        "numerical_default_threshold": numerical_default_threshold,
        "numerical_metric_type": numerical_metric_type,
        "thresholds": pairs,
    }
    return detection, validation_options(FUNCTION, params, features)


def tfdv_validate(
    base_statistics: Any,
    study_statistics: Any,
    detection_type: str | None = None,
    categorical_default_threshold: float | None = None,
    categorical_metric_type: str | None = None,
    numerical_default_threshold: float | None = None,
    numerical_metric_type: str | None = None,
    thresholds: Any = None,
) -> dict[str, Any]:
    """The ``Anomalies`` JSON object of ``study_statistics`` against ``base_statistics`` (JSON
    text or parsed objects); the other arguments as ML.TFDV_VALIDATE's (None: the default)."""
    base = _parse(base_statistics, "base_statistics")
    study = _parse(study_statistics, "study_statistics")
    detection, options = check_arguments(
        detection_type,
        categorical_default_threshold,
        categorical_metric_type,
        numerical_default_threshold,
        numerical_metric_type,
        thresholds,
        features=sorted(set(base.features) | set(study.features)),
    )
    treatment_name, control_name, measurements = _CONTEXT[detection]
    treatment, control = (base, study) if detection == "SKEW" else (study, base)
    anomalies: dict[str, Any] = {}
    infos = []
    for key, feature in treatment.features.items():
        other = control.features.get(key)
        path = {"step": feature.path}
        if other is None:
            reason = {
                "type": "COMPARATOR_CONTROL_DATA_MISSING",
                "shortDescription": f"{control_name} data missing",
                "description": f"{control_name} data is missing.",
            }
            anomalies[key] = _anomaly(path, reason)
            continue
        a, b = feature.distribution, other.distribution
        if a is None or b is None:
            continue  # BYTES or STRUCT statistics: no distribution to compare
        numerical = a.numerical and b.numerical
        metric = options.metric(numerical)
        if a.numerical != b.numerical:  # numerical on one side, categorical on the other
            if options.categorical_metric != L_INFTY:
                continue  # BigQuery ML leaves such a feature out of the report
            metric = L_INFTY
            a, b = (x if not x.numerical else Distribution.empty(False) for x in (a, b))
        threshold = options.threshold(key, numerical)
        if metric == L_INFTY:
            value, largest = largest_share_difference(a, b, _all_values(a, b))
        else:
            value, largest = distance(a, b, JENSEN_SHANNON, _all_values(a, b)), None
        infos.append(
            {
                "path": path,
                measurements: [{"type": metric, "value": value, "threshold": threshold}],
            }
        )
        if value > threshold:
            anomalies[key] = _anomaly(
                path, _reason(metric, value, threshold, treatment_name, control_name, largest)
            )
    out: dict[str, Any] = {"anomalyNameFormat": "SERIALIZED_PATH"}
    if anomalies:
        out["anomalyInfo"] = anomalies
    if treatment.num_examples == 0:
        out["dataMissing"] = True
    if infos:
        out["driftSkewInfo"] = infos
    return out


def _all_values(a: Distribution, b: Distribution) -> int:
    """Every value of both rank histograms (each was cut to its top values already)."""
    return max(len(a.counts), len(b.counts), 1)


def _reason(
    metric: str, value: float, threshold: float, treatment: str, control: str, largest: Any
) -> dict[str, str]:
    if metric == L_INFTY:
        return {
            "type": "COMPARATOR_L_INFTY_HIGH",
            "shortDescription": f"High Linfty distance between {treatment} and {control}",
            "description": (
                f"The Linfty distance between {treatment} and {control} is {_format(value)} "
                f"(up to six significant digits), above the threshold {_format(threshold)}. "
                f"The feature value with maximum difference is: {largest}"
            ),
        }
    return {
        "type": "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
        "shortDescription": (
            f"High approximate Jensen-Shannon divergence between {treatment} and {control}"
        ),
        "description": (
            f"The approximate Jensen-Shannon divergence between {treatment} and {control} is "
            f"{_format(value)} (up to six significant digits), above the threshold "
            f"{_format(threshold)}."
        ),
    }


def _anomaly(path: dict[str, Any], reason: dict[str, str]) -> dict[str, Any]:
    """One feature's AnomalyInfo: a single reason, so its descriptions are the reason's."""
    return {
        "path": path,
        "severity": "ERROR",
        "description": reason["description"],
        "shortDescription": reason["shortDescription"],
        "reason": [reason],
    }


def tfdv_validate_udf(
    base_statistics: str | None,
    study_statistics: str | None,
    detection_type: str | None,
    categorical_default_threshold: float | None,
    categorical_metric_type: str | None,
    numerical_default_threshold: float | None,
    numerical_metric_type: str | None,
    thresholds: str | None,
) -> str | None:
    """The DuckDB function behind ML.TFDV_VALIDATE: one row's arguments in (NULL optional
    arguments: their defaults), the Anomalies JSON text out; NULL statistics give NULL."""
    if base_statistics is None or study_statistics is None:
        return None
    anomalies = tfdv_validate(
        base_statistics,
        study_statistics,
        detection_type,
        categorical_default_threshold,
        categorical_metric_type,
        numerical_default_threshold,
        numerical_metric_type,
        thresholds,
    )
    return json.dumps(anomalies, separators=(",", ":"), allow_nan=False)
