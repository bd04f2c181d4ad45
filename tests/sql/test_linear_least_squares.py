"""LINEAR_REG's unregularised solve (sql/least_squares.py) against scikit-learn's
``LinearRegression.fit``: the normal equations where the matrix is well-conditioned (the same
answer to rounding), ``gelsd`` bit for bit elsewhere (collinear columns: the minimum-norm
solution, as before)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression

from shipyard.sql import least_squares
from shipyard.sql.least_squares import fit_linear_regression
from shipyard.sql.modeltypes import MODEL_TYPES


def _data(rows: int = 5000, cols: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)) @ (np.eye(cols) + 0.3 * rng.normal(size=(cols, cols)))
    y = x @ rng.normal(size=cols) + 3.0 + rng.normal(size=rows)
    return x, y


def _same_fit(mine: LinearRegression, reference: LinearRegression) -> bool:
    return (
        np.array_equal(mine.coef_, reference.coef_)
        and np.array_equal(mine.intercept_, reference.intercept_)
        and mine.rank_ == reference.rank_
        and np.array_equal(mine.singular_, reference.singular_)
    )


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_well_conditioned_data_takes_the_normal_equations_and_matches_lstsq(
    fit_intercept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _data()
    used: list[str] = []
    original = least_squares._gelsd
    monkeypatch.setattr(least_squares, "_gelsd", lambda *a: used.append("gelsd") or original(*a))
    mine = fit_linear_regression(x, y, fit_intercept=fit_intercept)
    reference = LinearRegression(fit_intercept=fit_intercept).fit(x, y)
    assert used == []  # the fast path answered
    assert type(mine) is LinearRegression and mine.fit_intercept is fit_intercept
    scale = np.linalg.norm(reference.coef_)
    assert np.linalg.norm(mine.coef_ - reference.coef_) <= 1e-13 * scale
    np.testing.assert_allclose(mine.predict(x), reference.predict(x), rtol=1e-13, atol=1e-12)
    if fit_intercept:
        assert mine.intercept_ == pytest.approx(reference.intercept_, rel=1e-13)
    else:
        assert mine.intercept_ == 0.0 == reference.intercept_
    assert mine.rank_ == reference.rank_ == x.shape[1] and mine.n_features_in_ == x.shape[1]
    np.testing.assert_allclose(mine.singular_, reference.singular_, rtol=1e-12)


def test_an_exact_linear_label_is_recovered_to_rounding() -> None:
    x, _ = _data(rows=300, cols=4, seed=1)
    y = x @ [2.0, -3.0, 0.5, 0.0] + 5.0
    mine = fit_linear_regression(x, y, fit_intercept=True)
    np.testing.assert_allclose(mine.coef_, [2.0, -3.0, 0.5, 0.0], atol=1e-13)
    assert mine.intercept_ == pytest.approx(5.0, abs=1e-13)


def _one_hot_with_intercept(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    # three indicator columns always sum to 1: collinear with the intercept once centred
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, 400)
    x = np.column_stack([rng.normal(size=400), np.eye(3)[group]])
    return x, 2 * x[:, 0] + np.array([1.0, 0.0, -1.0])[group] + rng.normal(size=400) / 10


def _duplicate_column() -> tuple[np.ndarray, np.ndarray]:
    x, y = _data(rows=500, cols=3, seed=3)
    return np.column_stack([x, x[:, 1]]), y


def _nearly_collinear() -> tuple[np.ndarray, np.ndarray]:
    # condition number ~1e5 once the columns are scaled: above MAX_CONDITION
    x, y = _data(rows=800, cols=3, seed=4)
    rng = np.random.default_rng(5)
    return np.column_stack([x, x[:, 0] + 1e-5 * rng.normal(size=800)]), y


def _constant_column() -> tuple[np.ndarray, np.ndarray]:
    x, y = _data(rows=200, cols=3, seed=6)
    return np.column_stack([x, np.full(200, 7.0)]), y


def _fewer_rows_than_columns() -> tuple[np.ndarray, np.ndarray]:
    return _data(rows=4, cols=6, seed=7)


def _one_row() -> tuple[np.ndarray, np.ndarray]:
    return np.array([[1.0, 2.0, 3.0]]), np.array([4.0])


def _wide() -> tuple[np.ndarray, np.ndarray]:
    return _data(rows=least_squares.MAX_COLUMNS + 100, cols=least_squares.MAX_COLUMNS + 1)


@pytest.mark.parametrize(
    ("make", "fit_intercept"),
    [
        (_wide, True),
        (_one_hot_with_intercept, True),
        (_constant_column, True),
        (_duplicate_column, True),
        (_duplicate_column, False),
        (_nearly_collinear, True),
        (_nearly_collinear, False),
        (_fewer_rows_than_columns, True),
        (_fewer_rows_than_columns, False),
        (_one_row, True),
        (_one_row, False),
    ],
)
def test_rank_deficient_or_ill_conditioned_data_is_scikit_learns_fit_bit_for_bit(
    make: object, fit_intercept: bool
) -> None:
    x, y = make()  # type: ignore[operator]
    mine = fit_linear_regression(x, y, fit_intercept=fit_intercept)
    reference = LinearRegression(fit_intercept=fit_intercept).fit(x, y)
    assert _same_fit(mine, reference)


@pytest.mark.parametrize("make", [_one_hot_with_intercept, _constant_column])
def test_without_an_intercept_indicators_and_constants_are_full_rank(make: object) -> None:
    # Not centred, the indicator columns and a constant column are ordinary columns.
    x, y = make()  # type: ignore[operator]
    mine = fit_linear_regression(x, y, fit_intercept=False)
    reference = LinearRegression(fit_intercept=False).fit(x, y)
    assert mine.rank_ == reference.rank_ == x.shape[1]
    np.testing.assert_allclose(mine.predict(x), reference.predict(x), rtol=1e-12, atol=1e-12)


def test_collinear_columns_get_the_minimum_norm_solution() -> None:
    x, y = _duplicate_column()
    mine = fit_linear_regression(x, y, fit_intercept=True)
    assert mine.rank_ == 3
    # the duplicated column's weight is shared equally (minimum norm), not put on one copy
    assert mine.coef_[1] == pytest.approx(mine.coef_[3], rel=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_gets_scikit_learns_error(bad: float) -> None:
    x, y = _data(rows=50, cols=2)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        fit_linear_regression(x, y, fit_intercept=True)
    x, y = _data(rows=50, cols=2)
    y[7] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        fit_linear_regression(x, y, fit_intercept=True)


def test_create_model_linear_reg_matches_scikit_learn_and_collinear_one_hot_still_trains() -> None:
    rng = np.random.default_rng(8)
    n = 3000
    a, b = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["x", "y", "z"], n)
    y = 1.5 * a - 2.0 * b + np.where(c == "x", 1.0, 0.0) + rng.normal(size=n) / 5
    table = pa.table({"a": a, "b": b, "c": c, "label": y})
    trained = MODEL_TYPES["LINEAR_REG"].train(
        table, {"model_type": "LINEAR_REG", "data_split_method": "NO_SPLIT"}
    )
    predictor = trained.predictor()
    matrix = predictor.preprocessor.transform(table, dtype=np.float64)
    reference = LinearRegression().fit(matrix, y)  # one-hot of 3 levels: rank-deficient
    assert _same_fit(trained.model, reference)
    out = predictor.predict(table).column("predicted_label").to_numpy()
    np.testing.assert_allclose(out, reference.predict(matrix), rtol=1e-12)
    assert trained.training_info[0]["loss"] == pytest.approx(
        float(np.mean((reference.predict(matrix) - y) ** 2)), rel=1e-12
    )
    numeric = MODEL_TYPES["LINEAR_REG"].train(
        table.drop_columns(["c"]), {"model_type": "LINEAR_REG", "data_split_method": "NO_SPLIT"}
    )
    matrix = numeric.predictor().preprocessor.transform(table, dtype=np.float64)
    reference = LinearRegression().fit(matrix, y)  # well-conditioned: the normal equations
    np.testing.assert_allclose(numeric.model.coef_, reference.coef_, rtol=1e-12)
    assert numeric.eval_metrics["r2_score"] == pytest.approx(
        1 - np.mean((reference.predict(matrix) - y) ** 2) / np.var(y), rel=1e-12
    )
