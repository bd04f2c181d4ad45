"""data_split_test_fraction with hyperparameter tuning: a held-out test split that ML.EVALUATE
reports on, while ML.TRIAL_INFO keeps the evaluation split's objective."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

import shipyard as sy
from shipyard.sql.holdout import HoldoutSplit, split_test

_N = 200
_TUNED = (
    "CREATE OR REPLACE MODEL {name} OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], "
    "num_trials=3, l2_reg=HPARAM_CANDIDATES([0.0, 10.0, 1000.0]), {split}) "
    "AS SELECT x, z, y FROM demo.t"
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    rng = random.Random(7)
    workspace = sy.connect(tmp_path_factory.mktemp("test_split"))
    workspace.load_table(
        "demo.t",
        [{"x": float(i), "z": rng.random(), "y": 3.0 * i + rng.gauss(0.0, 5.0)} for i in range(_N)],
    )
    yield workspace
    workspace.close()


def _rows(ws: Any, sql: str) -> list[dict[str, Any]]:
    return ws.sql(sql).to_arrow().to_pylist()  # type: ignore[no-any-return]


def test_random_test_split_is_what_ml_evaluate_reports(ws: Any) -> None:
    ws.sql(
        _TUNED.format(
            name="demo.tuned",
            split="data_split_method='RANDOM', data_split_eval_fraction=0.2, "
            "data_split_test_fraction=0.1",
        )
    )
    trials = _rows(ws, "SELECT * FROM ML.TRIAL_INFO(MODEL demo.tuned) ORDER BY trial_id")
    evaluated = _rows(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.tuned) ORDER BY trial_id")
    optimal = next(t["trial_id"] for t in trials if t["is_optimal"])
    # the held-out rows, chosen again the way the statement chose them (seeded)
    table = ws.sql("SELECT x, z, y FROM demo.t").to_arrow()
    _, test = split_test(table, HoldoutSplit(0.1, "RANDOM", 0.2, None))
    assert test.num_rows == _N // 10
    ws.load_table("demo.held_out", test.to_pylist())
    (on_test,) = _rows(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.tuned, TABLE demo.held_out)")
    best = next(r for r in evaluated if r["trial_id"] == optimal)
    assert best["r2_score"] == pytest.approx(on_test["r2_score"], rel=1e-9)
    assert best["mean_squared_error"] == pytest.approx(on_test["mean_squared_error"], rel=1e-9)
    # ML.TRIAL_INFO keeps the objective on the evaluation split: other rows, other values
    tuned_r2 = next(t for t in trials if t["is_optimal"])["hparam_tuning_evaluation_metrics"]
    assert tuned_r2["r2_score"] != pytest.approx(best["r2_score"], rel=1e-6)
    # trial_id picks one trial's test metrics; the version's metrics are the optimal trial's
    (second,) = _rows(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.tuned, STRUCT(1 AS trial_id))")
    assert second["r2_score"] == pytest.approx(evaluated[0]["r2_score"])
    assert ws.models.get_version("demo.tuned").metrics["r2_score"] == pytest.approx(
        best["r2_score"]
    )


def test_seq_holds_out_the_last_rows(ws: Any) -> None:
    ws.sql(
        _TUNED.format(
            name="demo.seq",
            split="data_split_method='SEQ', data_split_col='x', data_split_eval_fraction=0.2, "
            "data_split_test_fraction=0.15",
        )
    )
    evaluated = _rows(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.seq) ORDER BY trial_id")
    trials = _rows(ws, "SELECT trial_id, is_optimal FROM ML.TRIAL_INFO(MODEL demo.seq)")
    optimal = next(t["trial_id"] for t in trials if t["is_optimal"])
    (on_last,) = _rows(
        ws,
        f"SELECT * FROM ML.EVALUATE(MODEL demo.seq, (SELECT * FROM demo.t WHERE x >= {_N - 30}))",
    )
    best = next(r for r in evaluated if r["trial_id"] == optimal)
    assert best["mean_absolute_error"] == pytest.approx(on_last["mean_absolute_error"], rel=1e-9)


def test_without_a_test_split_evaluate_reports_the_evaluation_split(ws: Any) -> None:
    ws.sql(_TUNED.format(name="demo.plain", split="data_split_method='RANDOM'"))
    trials = _rows(ws, "SELECT * FROM ML.TRIAL_INFO(MODEL demo.plain) ORDER BY trial_id")
    evaluated = _rows(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.plain) ORDER BY trial_id")
    for trial, row in zip(trials, evaluated, strict=True):
        assert trial["hparam_tuning_evaluation_metrics"]["r2_score"] == pytest.approx(
            row["r2_score"]
        )


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ("data_split_test_fraction=0.1", sy.InvalidArgument, "applies to hyperparameter tuning"),
        ("num_trials=2, data_split_test_fraction=1.5", sy.InvalidArgument, "from 0 to 0.99"),
        ("num_trials=2, data_split_test_fraction='a lot'", sy.InvalidArgument, "FLOAT64"),
        (
            "num_trials=2, data_split_method='NO_SPLIT', data_split_test_fraction=0.1",
            sy.InvalidArgument,
            "NO_SPLIT",
        ),
        (
            "num_trials=2, data_split_method='RANDOM', data_split_eval_fraction=0.6, "
            "data_split_test_fraction=0.4",
            sy.InvalidArgument,
            "sum must be below 1",
        ),
        (
            "num_trials=2, data_split_method='CUSTOM', data_split_col='x', "
            "data_split_test_fraction=0.1",
            sy.InvalidArgument,
            "does not apply to data_split_method CUSTOM",
        ),
    ],
)
def test_bad_test_splits_are_refused_before_training(
    ws: Any, options: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], "
            f"{options}) AS SELECT x, z, y FROM demo.t"
        )
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def test_unsupervised_types_refuse_it(ws: Any) -> None:
    with pytest.raises(sy.InvalidArgument, match="supervised model types"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='KMEANS', num_trials=2, "
            "data_split_test_fraction=0.1) AS SELECT x, z FROM demo.t"
        )
