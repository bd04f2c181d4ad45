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
no split to make. Supervised model types only (regressors and classifiers).

``data_split_method='CUSTOM'`` with tuning is BigQuery ML's three-way form: ``data_split_col``
is a STRING column whose value says each row's split, ``'TRAIN'``, ``'EVAL'`` or ``'TEST'``
(exactly these, upper case: the reference names no other spelling). The trials train on the
TRAIN rows and are scored on the EVAL rows; the TEST rows are held out and evaluated as above.
A NULL or any other value, or a split with no rows, is an InvalidArgument before any trial
runs (the reference does not say what it does with them; refusing keeps a typo from moving rows
silently). ``data_split_test_fraction`` does not apply (the column decides). A BOOL column keeps
the two-way form (TRUE or NULL = evaluation, no test split), as without tuning; BigQuery ML asks
for the STRING column when tuning, Shipyard accepts both.

Example::

    CREATE MODEL demo.tuned
    OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], num_trials=4,
            l2_reg=HPARAM_RANGE(0, 5), data_split_method='RANDOM',
            data_split_eval_fraction=0.2, data_split_test_fraction=0.1)
    AS SELECT * FROM demo.t

    CREATE MODEL demo.tuned_custom
    OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], num_trials=4,
            l2_reg=HPARAM_RANGE(0, 5), data_split_method='CUSTOM', data_split_col='split')
    AS SELECT x, y, split FROM demo.t  -- split: 'TRAIN' | 'EVAL' | 'TEST'
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

from shipyard.errors import InvalidArgument
from shipyard.registry.flavors import load_model
from shipyard.registry.predictor import Predictor
from shipyard.sql import training
from shipyard.sql.evaluation import evaluate

if TYPE_CHECKING:
    from shipyard.engine import JobContext
    from shipyard.sql.modeltypes import ModelTypeSpec
    from shipyard.sql.tuning import TuningOutcome, TuningPlan

__all__ = [
    "CUSTOM_VALUES",
    "OPTION",
    "CustomSplit",
    "HoldoutSplit",
    "plan_test_split",
    "run_trials_with_test_split",
    "split_custom",
    "split_test",
]

OPTION = "data_split_test_fraction"
_SUPERVISED = ("regression", "classification")
#: The values of a CUSTOM split column with tuning, in BigQuery ML's spelling.
CUSTOM_VALUES = ("TRAIN", "EVAL", "TEST")


@dataclass(frozen=True)
class HoldoutSplit:
    """The statement's test split: its fraction of all rows and the split options it needs."""

    fraction: float
    method: str
    eval_fraction: float | None  # data_split_eval_fraction when the statement gives it
    column: str | None  # data_split_col (SEQ)


@dataclass(frozen=True)
class CustomSplit:
    """``data_split_method='CUSTOM'`` with tuning: ``data_split_col`` says each row's split."""

    column: str


def plan_test_split(
    spec: ModelTypeSpec, options: dict[str, Any]
) -> HoldoutSplit | CustomSplit | None:
    """Take ``data_split_test_fraction`` out of CREATE MODEL's options (lower-cased names) and
    check it against the others, before any data is read; None when there is no test split to
    make (absent or 0), a :class:`CustomSplit` for CUSTOM with tuning (the column decides)."""
    method = str(options.get("data_split_method", "AUTO_SPLIT")).upper()
    if OPTION not in options:
        return _custom(spec, options) if method == "CUSTOM" else None
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
    if method == "CUSTOM":
        if fraction == 0.0:
            return _custom(spec, options)
        raise InvalidArgument(
            f"option {OPTION!r} does not apply to data_split_method CUSTOM: with hyperparameter "
            "tuning the STRING column data_split_col marks each row 'TRAIN', 'EVAL' or 'TEST'; "
            f"drop {OPTION}, or use RANDOM or SEQ to hold out a fraction",
            option=OPTION,
        )
    if fraction == 0.0:
        return None
    if method == "NO_SPLIT":
        raise InvalidArgument(
            f"option {OPTION!r} needs a data split, but data_split_method is NO_SPLIT; use "
            "AUTO_SPLIT, RANDOM or SEQ",
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


def _custom(spec: ModelTypeSpec, options: dict[str, Any]) -> CustomSplit | None:
    """CUSTOM with tuning on a supervised model type; None otherwise (the model type's own
    options report a missing data_split_col or an option it does not take)."""
    column = options.get("data_split_col")
    if "num_trials" not in options or spec.task_kind not in _SUPERVISED:
        return None
    return CustomSplit(column) if isinstance(column, str) else None


def split_custom(table: pa.Table, split: CustomSplit) -> tuple[pa.Table, pa.Table | None]:
    """(the TRAIN and EVAL rows, the TEST rows) of a CUSTOM split column; in the first table
    the column becomes BOOL (TRUE = EVAL), CUSTOM's two-way form that the trials' own data
    split reads. A BOOL column is that form already: (the table, None), no test split."""
    name = split.column
    if name not in table.column_names:
        raise InvalidArgument(
            f"data_split_col {name!r} is not a column of the training query; its columns: "
            f"{', '.join(table.column_names)}",
            option="data_split_col",
        )
    column = table.column(name)
    if pa.types.is_boolean(column.type):
        return table, None
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InvalidArgument(
            f"data_split_col {name!r} has type {column.type}; data_split_method CUSTOM with "
            "hyperparameter tuning needs a STRING column whose values are 'TRAIN', 'EVAL' or "
            "'TEST' (or a BOOL column, TRUE or NULL = evaluation, for a split without test rows)",
            option="data_split_col",
            type=str(column.type),
        )
    if column.null_count:
        raise InvalidArgument(
            f"data_split_col {name!r} is NULL in {column.null_count} row(s); with "
            "data_split_method CUSTOM and hyperparameter tuning every row needs 'TRAIN', 'EVAL' "
            f"or 'TEST' (e.g. IFNULL({name}, 'TRAIN') in the training query)",
            option="data_split_col",
            rows=column.null_count,
        )
    counts = {
        str(row["values"]): int(row["counts"])
        for row in pc.value_counts(column.combine_chunks()).to_pylist()
    }
    unknown = sorted(v for v in counts if v not in CUSTOM_VALUES)
    if unknown:
        shown = ", ".join(f"{v!r} ({counts[v]} rows)" for v in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        cased = any(v.strip().upper() in CUSTOM_VALUES for v in unknown)
        raise InvalidArgument(
            f"data_split_col {name!r} has values other than 'TRAIN', 'EVAL' and 'TEST': "
            f"{shown}{more}"
            + ("; the values are matched exactly (upper case, no spaces)" if cased else ""),
            option="data_split_col",
            values=unknown[:5],
        )
    empty = [v for v in CUSTOM_VALUES if not counts.get(v)]
    if empty:
        found = ", ".join(f"{v} {counts.get(v, 0)}" for v in CUSTOM_VALUES)
        raise InvalidArgument(
            f"data_split_col {name!r} has no {' or '.join(repr(v) for v in empty)} rows "
            f"({found}): each split needs at least one row; for tuning without a test split "
            f"use a BOOL column (TRUE = evaluation)",
            option="data_split_col",
            empty=empty,
        )
    test = pc.equal(column, "TEST")
    rest = table.filter(pc.invert(test))
    index = rest.column_names.index(name)
    as_bool = pc.equal(rest.column(name), "EVAL")
    rest = rest.set_column(index, pa.field(name, pa.bool_()), as_bool)
    return rest, table.filter(test)


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
    split: HoldoutSplit | CustomSplit | None,
) -> TuningOutcome:
    """:func:`shipyard.sql.tuning.run_trials`, with a test split held out when there is one."""
    from shipyard.sql import tuning

    if isinstance(split, CustomSplit):
        return _run_custom(spec, table, plan, job, split)
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


def _run_custom(
    spec: ModelTypeSpec, table: pa.Table, plan: TuningPlan, job: JobContext, split: CustomSplit
) -> TuningOutcome:
    from shipyard.sql import tuning

    rest, test = split_custom(table, split)
    if test is None:  # a BOOL column: CUSTOM's two-way form, no test rows
        return tuning.run_trials(spec, table, plan, job)
    n_eval = int(pc.sum(rest.column(split.column)).as_py() or 0)
    job.log(
        f"data_split_col {split.column!r}: {rest.num_rows - n_eval} TRAIN, {n_eval} EVAL and "
        f"{test.num_rows} TEST rows; the trials train on TRAIN and are scored on EVAL"
    )
    outcome = tuning.run_trials(spec, rest, plan, job)
    job.progress(0.92, "evaluating the trials on the test split")
    _score_on_test(outcome, test, job)
    outcome.summary["data_split_col"] = split.column
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
    if rows.num_rows == 0:
        raise InvalidArgument(
            f"the test split has no rows with a non-NULL label {label!r}: nothing to evaluate "
            "the trials on; give the test split labelled rows"
        )
    matrix = predictor.matrix(rows)
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
