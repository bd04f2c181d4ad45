"""``data_split_test_fraction``: a test split for hyperparameter tuning, as BigQuery ML has it.

With ``OPTIONS(num_trials=…, data_split_test_fraction=f)`` the training query's rows are split
three ways. First ``f`` of them (rounded, at least one row) are held out as the *test* split;
the trials never see them. The rest go to the usual training/evaluation split
(``data_split_method``), and ``data_split_eval_fraction``, a fraction of *all* rows in BigQuery
ML, is rescaled to the rows that remain, so ``eval 0.2, test 0.1`` trains on 70 %. Each trial is
scored on the evaluation split (its objective, ``ML.TRIAL_INFO``'s
``hparam_tuning_evaluation_metrics``) and, once all have run, every SUCCEEDED trial's model is
evaluated on the test split: those metrics are its ``evaluation_metrics`` (BigQuery's
``HparamTuningTrial.evaluationMetrics``, "calculated on the test data"), which ML.EVALUATE
without input rows returns, one row per trial, and ML.EVALUATE with ``STRUCT(n AS trial_id)``
returns for trial n. The version's metrics are the optimal trial's test metrics.

How the test rows are chosen follows ``data_split_method``: AUTO_SPLIT and RANDOM draw them at
random (seeded, so a statement run twice holds out the same rows); SEQ takes the rows with the
largest ``data_split_col`` values (then the evaluation rows are the next largest). NO_SPLIT has
no split to make and CUSTOM's three-way form (a STRING column of 'TRAIN' / 'EVAL' / 'TEST') is
not supported yet. Supervised model types only (regressors and classifiers).

Example::

    CREATE MODEL demo.tuned
    OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], num_trials=4,
            l2_reg=HPARAM_RANGE(0, 5), data_split_method='RANDOM',
            data_split_eval_fraction=0.2, data_split_test_fraction=0.1)
    AS SELECT * FROM demo.t
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.flavors import load_model
from shipyard.registry.predictor import Predictor
from shipyard.sql import training
from shipyard.sql.evaluation import evaluate

if TYPE_CHECKING:
    from shipyard.engine import JobContext
    from shipyard.sql.modeltypes import ModelTypeSpec
    from shipyard.sql.tuning import TuningOutcome, TuningPlan

__all__ = ["OPTION", "HoldoutSplit", "plan_test_split", "run_trials_with_test_split", "split_test"]

OPTION = "data_split_test_fraction"
_SUPERVISED = ("regression", "classification")


@dataclass(frozen=True)
class HoldoutSplit:
    """The statement's test split: its fraction of all rows and the split options it needs."""

    fraction: float
    method: str
    eval_fraction: float | None  # data_split_eval_fraction when the statement gives it
    column: str | None  # data_split_col (SEQ)


def plan_test_split(spec: ModelTypeSpec, options: dict[str, Any]) -> HoldoutSplit | None:
    """Take ``data_split_test_fraction`` out of CREATE MODEL's options (lower-cased names) and
    check it against the others, before any data is read; None when absent (or 0)."""
    if OPTION not in options:
        return None
    value = options.pop(OPTION)
    if "num_trials" not in options:
        raise InvalidArgument(
            f"option {OPTION!r} applies to hyperparameter tuning: add OPTIONS(num_trials=…); "
            "without tuning, data_split_eval_fraction is the only held-out split",
            option=OPTION,
        )
    if spec.task_kind not in _SUPERVISED:
        raise InvalidArgument(
            f"option {OPTION!r} applies to supervised model types (regressors and "
            f"classifiers), not {spec.name}",
            option=OPTION,
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(
            f"option {OPTION!r} must be a FLOAT64 from 0 to 0.99, got {value!r}", option=OPTION
        )
    fraction = round(float(value), 2)  # two decimal places, as data_split_eval_fraction
    if not 0.0 <= fraction < 1.0:
        raise InvalidArgument(
            f"option {OPTION!r} must be from 0 to 0.99 (two decimal places are kept), "
            f"got {value!r}",
            option=OPTION,
        )
    if fraction == 0.0:
        return None
    method = str(options.get("data_split_method", "AUTO_SPLIT")).upper()
    if method == "NO_SPLIT":
        raise InvalidArgument(
            f"option {OPTION!r} needs a data split, but data_split_method is NO_SPLIT; use "
            "AUTO_SPLIT, RANDOM or SEQ",
            option=OPTION,
        )
    if method == "CUSTOM":
        raise Unsupported(
            f"option {OPTION!r} with data_split_method CUSTOM (a STRING column of 'TRAIN', "
            "'EVAL' and 'TEST') is not supported yet; use RANDOM or SEQ",
            option=OPTION,
        )
    eval_fraction = options.get("data_split_eval_fraction")
    if isinstance(eval_fraction, int | float) and not isinstance(eval_fraction, bool):
        if round(float(eval_fraction), 2) + fraction >= 1.0:
            raise InvalidArgument(
                f"data_split_eval_fraction ({eval_fraction}) and {OPTION} ({fraction}) leave no "
                "training rows: their sum must be below 1",
                option=OPTION,
            )
    else:
        eval_fraction = None
    column = options.get("data_split_col")
    return HoldoutSplit(
        fraction, method, eval_fraction, column if isinstance(column, str) else None
    )


def split_test(table: pa.Table, split: HoldoutSplit) -> tuple[pa.Table, pa.Table]:
    """(the rows the trials train and evaluate on, the test rows)."""
    n = table.num_rows
    n_test = round(n * split.fraction)
    if split.method == "SEQ":
        if split.column is None or split.column not in table.column_names:
            raise InvalidArgument(
                f"data_split_col {split.column!r} is not a column of the training query; its "
                f"columns: {', '.join(table.column_names)}",
                option="data_split_col",
            )
        mask = training._seq_mask(table, split.column, split.fraction)
    else:
        mask = training._random_mask(n, n_test)
    if not mask.any() or mask.all():
        raise InvalidArgument(
            f"{OPTION}={split.fraction} of {n} rows leaves "
            + ("no test rows" if not mask.any() else "no rows to train on")
            + "; give more rows or another fraction",
            option=OPTION,
        )
    test = pa.array(mask)
    return table.filter(pc.invert(test)), table.filter(test)


def _rescaled(plan: TuningPlan, split: HoldoutSplit) -> TuningPlan:
    """The plan whose data_split_eval_fraction is a fraction of the rows left after the test
    split (BigQuery ML's is a fraction of all rows)."""
    if split.eval_fraction is None:
        return plan
    rescaled = round(float(split.eval_fraction) / (1.0 - split.fraction), 2)
    base = {**plan.base, "data_split_eval_fraction": min(rescaled, 0.99)}
    return dataclasses.replace(plan, base=base)


def run_trials_with_test_split(
    spec: ModelTypeSpec,
    table: pa.Table,
    plan: TuningPlan,
    job: JobContext,
    split: HoldoutSplit | None,
) -> TuningOutcome:
    """:func:`shipyard.sql.tuning.run_trials`, with a test split held out when there is one."""
    from shipyard.sql import tuning

    if split is None:
        return tuning.run_trials(spec, table, plan, job)
    rest, test = split_test(table, split)
    job.log(
        f"data_split_test_fraction {split.fraction}: {test.num_rows} of {table.num_rows} rows "
        "held out as the test split; the trials train and evaluate on the others"
    )
    outcome = tuning.run_trials(spec, rest, _rescaled(plan, split), job)
    job.progress(0.92, "evaluating the trials on the test split")
    _score_on_test(outcome, test, job)
    outcome.summary["data_split_test_fraction"] = split.fraction
    outcome.summary["test_rows"] = test.num_rows
    return outcome


def _score_on_test(outcome: TuningOutcome, test: pa.Table, job: JobContext) -> None:
    best = outcome.best
    best_predictor = best.predictor()
    optimal = outcome.summary.get("optimal_trial_id")
    for trial in outcome.summary["trials"]:
        if trial.get("status") != "SUCCEEDED" or not trial.get("model"):
            continue
        predictor = (
            best_predictor
            if trial["trial_id"] == optimal
            else _trial_predictor(best_predictor, trial["model"], outcome.files)
        )
        metrics = _metrics(predictor, test)
        trial["evaluation_metrics"] = metrics  # BigQuery: "calculated on the test data"
        if trial["trial_id"] == optimal:
            best.eval_metrics = dict(metrics)
    job.log(f"optimal trial {optimal} on the test split: {best.eval_metrics}")


def _trial_predictor(best: Predictor, stored: dict[str, Any], files: dict[str, bytes]) -> Predictor:
    """A trial's model, rebuilt from the files the tuning run is about to store."""
    meta = stored["flavor_meta"]
    with tempfile.TemporaryDirectory(prefix="shipyard-trial-") as tmp:
        folder = Path(tmp)
        for name in meta.get("files") or []:
            (folder / name).write_bytes(files[name])
        model = load_model(best.flavor, folder, meta)
    data = best.to_dict()
    if stored.get("preprocessing"):
        data["preprocessor"] = stored["preprocessing"]
    data["config"] = {**best.config, **(stored.get("predictor_config") or {})}
    return Predictor.from_dict(data, model)


def _metrics(predictor: Predictor, rows: pa.Table) -> dict[str, Any]:
    """ML.EVALUATE's metrics of ``predictor`` on ``rows`` (those with a label)."""
    label = predictor.label
    rows = rows.filter(pc.is_valid(rows[label]))
    matrix = predictor.preprocessor.transform(rows, dtype=predictor._dtype)
    predictions, probabilities = predictor.predict_raw(matrix)
    if predictor.label_info is None:
        truth = rows[label].to_numpy().astype(np.float64)
        metrics = evaluate(predictor.task, truth, predictions, None, None)
    else:
        metrics = evaluate(
            predictor.task,
            predictor.label_info.encode(rows[label]),
            predictions,
            probabilities,
            predictor.label_info.values(),
        )
    return {k: _plain(v) for k, v in metrics.items()}


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers (JSON in the manifest)."""
    return value.item() if isinstance(value, np.generic) else value
