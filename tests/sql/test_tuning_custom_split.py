"""data_split_method='CUSTOM' with hyperparameter tuning: BigQuery ML's three-way STRING column
('TRAIN' / 'EVAL' / 'TEST'). The trials train on TRAIN, the objective is computed on EVAL, and
ML.EVALUATE / the version's metrics report TEST; the BOOL two-way form stays valid; a bad column
is refused before any trial runs, leaving the registry as it was."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.sql.holdout import CustomSplit, split_custom

pytest.importorskip("optuna")

_N = 120
_SPLIT = ("TRAIN",) * 3 + ("EVAL", "TEST")  # row i → _SPLIT[i % 5]: 72 / 24 / 24 rows
_TUNED = (
    "CREATE {verb} MODEL {name} OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], "
    "num_trials=3, l2_reg=HPARAM_CANDIDATES([0.0, 30.0, 3000.0]), data_split_method='CUSTOM', "
    "data_split_col='{column}') AS SELECT x, z, y, {column} FROM {table}"
)


def _table(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(_N):
        x, z = rng.uniform(0.0, 10.0), rng.uniform(-1.0, 1.0)
        rows.append(
            {
                "x": x,
                "z": z,
                "y": 3.0 * x - 2.0 * z + rng.gauss(0.0, 1.0),
                "split": _SPLIT[i % 5],
                "is_eval": _SPLIT[i % 5] != "TRAIN",
                "n": i % 3,
            }
        )
    return rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("custom_split"))
    workspace.load_table("demo.t", _table(random.Random(11)))
    workspace.sql(_TUNED.format(verb="", name="demo.tuned", column="split", table="demo.t"))
    yield workspace
    workspace.close()


def _rows(ws: Any, sql: str) -> list[dict[str, Any]]:
    return ws.sql(sql).to_arrow().to_pylist()  # type: ignore[no-any-return]


def _optimal(ws: Any, model: str) -> dict[str, Any]:
    trials = _rows(ws, f"SELECT * FROM ML.TRIAL_INFO(MODEL {model}) ORDER BY trial_id")
    (optimal,) = [t for t in trials if t["is_optimal"]]
    return optimal


def test_evaluate_reports_the_test_rows(ws: Any) -> None:
    optimal = _optimal(ws, "demo.tuned")
    evaluated = _rows(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.tuned) ORDER BY trial_id")
    assert [r["trial_id"] for r in evaluated] == [1, 2, 3]
    for row in evaluated:  # each trial's metrics are its model's on the TEST rows
        (on_test,) = _rows(
            ws,
            "SELECT * FROM ML.EVALUATE(MODEL demo.tuned, (SELECT * FROM demo.t WHERE "
            f"split = 'TEST'), STRUCT({row['trial_id']} AS trial_id))",
        )
        assert row["r2_score"] == pytest.approx(on_test["r2_score"], rel=1e-9)
        assert row["mean_squared_error"] == pytest.approx(on_test["mean_squared_error"], rel=1e-9)
    best = next(r for r in evaluated if r["trial_id"] == optimal["trial_id"])
    version = ws.models.get_version("demo.tuned")
    assert version.metrics["r2_score"] == pytest.approx(best["r2_score"], rel=1e-9)
    tuning = ws.models.manifest("demo.tuned").hparam_tuning
    assert tuning["test_rows"] == _N // 5 and tuning["data_split_col"] == "split"


def test_the_objective_is_computed_on_the_eval_rows(ws: Any) -> None:
    trials = _rows(ws, "SELECT * FROM ML.TRIAL_INFO(MODEL demo.tuned) ORDER BY trial_id")
    assert {t["status"] for t in trials} == {"SUCCEEDED"}
    for trial in trials:
        (on_eval,) = _rows(
            ws,
            "SELECT r2_score FROM ML.EVALUATE(MODEL demo.tuned, (SELECT * FROM demo.t WHERE "
            f"split = 'EVAL'), STRUCT({trial['trial_id']} AS trial_id))",
        )
        objective = trial["hparam_tuning_evaluation_metrics"]["r2_score"]
        assert objective == pytest.approx(on_eval["r2_score"], rel=1e-9)
    # the penalty that fits the EVAL rows best wins; l2_reg=3000 shrinks the slope far off
    assert _optimal(ws, "demo.tuned")["hyperparameters"]["l2_reg"] != 3000.0


def test_the_trials_train_on_the_train_rows_only(ws: Any) -> None:
    l2_reg = _optimal(ws, "demo.tuned")["hyperparameters"]["l2_reg"]
    ws.sql(
        "CREATE MODEL demo.train_only OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], "
        f"data_split_method='NO_SPLIT', l2_reg={l2_reg}) "
        "AS SELECT x, z, y FROM demo.t WHERE split = 'TRAIN'"
    )
    query = "SELECT predicted_y FROM ML.PREDICT(MODEL {}, (SELECT x, z FROM demo.t))"
    tuned = ws.sql(query.format("demo.tuned")).to_arrow()["predicted_y"].to_pylist()
    alone = ws.sql(query.format("demo.train_only")).to_arrow()["predicted_y"].to_pylist()
    assert tuned == pytest.approx(alone, rel=1e-9)  # the split column is not a feature either


def test_a_bool_column_keeps_the_two_way_split(ws: Any) -> None:
    ws.sql(_TUNED.format(verb="", name="demo.two_way", column="is_eval", table="demo.t"))
    trials = _rows(ws, "SELECT * FROM ML.TRIAL_INFO(MODEL demo.two_way) ORDER BY trial_id")
    evaluated = _rows(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.two_way) ORDER BY trial_id")
    for trial, row in zip(trials, evaluated, strict=True):  # no test rows: the EVAL metrics
        assert trial["hparam_tuning_evaluation_metrics"]["r2_score"] == pytest.approx(
            row["r2_score"]
        )
    assert "test_rows" not in ws.models.manifest("demo.two_way").hparam_tuning


def _with_split(ws: Any, name: str, values: list[Any], type_: pa.DataType) -> None:
    base = ws.sql("SELECT x, z, y FROM demo.t").to_arrow()
    ws.load_table(name, base.append_column(pa.field("split", type_), pa.array(values, type_)))


def _cycle(values: tuple[Any, ...]) -> list[Any]:
    return [values[i % len(values)] for i in range(_N)]


@pytest.mark.parametrize(
    ("values", "type_", "fragment"),
    [
        (_cycle((0, 1, 2)), pa.int64(), "has type int64"),
        (_cycle(("TRAIN", "EVAL", "TEST", "VALIDATE")), pa.string(), "'VALIDATE' (30 rows)"),
        (_cycle(("TRAIN", "eval", "TEST")), pa.string(), "matched exactly"),
        (_cycle(("TRAIN", "EVAL", "TEST", None)), pa.string(), "NULL in 30 row(s)"),
        (_cycle(("TRAIN", "EVAL")), pa.string(), "no 'TEST' rows (TRAIN 60, EVAL 60, TEST 0)"),
        (_cycle(("TRAIN", "TEST")), pa.string(), "no 'EVAL' rows"),
        (_cycle(("EVAL", "TEST")), pa.string(), "no 'TRAIN' rows"),
    ],
    ids=["int", "unknown", "case", "null", "no-test", "no-eval", "no-train"],
)
def test_bad_split_columns_are_refused(
    ws: Any, values: list[Any], type_: pa.DataType, fragment: str
) -> None:
    _with_split(ws, "demo.bad_split", values, type_)
    before = ws.models.versions("demo.tuned").items
    with pytest.raises(sy.InvalidArgument) as info:
        ws.sql(
            _TUNED.format(
                verb="OR REPLACE", name="demo.tuned", column="split", table="demo.bad_split"
            )
        )
    assert fragment in str(info.value)
    assert "data_split_col 'split'" in str(info.value)
    assert ws.models.versions("demo.tuned").items == before  # no version was added
    with pytest.raises(sy.InvalidArgument, match="data_split_col"):
        ws.sql(_TUNED.format(verb="", name="demo.fresh", column="split", table="demo.bad_split"))
    assert "demo.fresh" not in [m.name for m in ws.models.list().items]


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        (
            _TUNED.format(verb="", name="demo.bad", column="split", table="demo.t").replace(
                "num_trials=3", "num_trials=3, data_split_test_fraction=0.1"
            ),
            "does not apply to data_split_method CUSTOM",
        ),
        (
            _TUNED.format(verb="", name="demo.bad", column="split", table="demo.t").replace(
                "data_split_col='split'", "data_split_col='nope'"
            ),
            "data_split_col 'nope' is not a column of the training query",
        ),
        (
            _TUNED.format(verb="", name="demo.bad", column="split", table="demo.t").replace(
                "SELECT x, z, y,", "SELECT x, z, IF(split = 'TEST', NULL, y) AS y,"
            ),
            "the test split has no rows with a non-NULL label 'y'",
        ),
    ],
    ids=["test-fraction", "missing-column", "unlabelled-test"],
)
def test_other_mistakes_are_refused(ws: Any, statement: str, fragment: str) -> None:
    with pytest.raises(sy.InvalidArgument) as info:
        ws.sql(statement)
    assert fragment in str(info.value)
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def test_split_custom_turns_the_column_into_the_two_way_form() -> None:
    table = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "s": ["TRAIN", "EVAL", "TEST", "TRAIN"]})
    rest, test = split_custom(table, CustomSplit("s"))
    assert test is not None and test.column("x").to_pylist() == [3.0]
    assert rest.schema.field("s").type == pa.bool_()
    assert rest.column("s").to_pylist() == [False, True, False]  # TRUE = evaluation
    flags = pa.table({"x": [1.0], "s": [True]})
    assert split_custom(flags, CustomSplit("s")) == (flags, None)
