"""FeaturePreprocessor(categorical_encoding="target"): BigQuery ML's TARGET_ENCODING."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shipyard.errors import InvalidArgument
from shipyard.registry.preprocessing import FeaturePreprocessor


def _fit(
    table: pa.Table, target: np.ndarray, names: list[str] | None = None
) -> FeaturePreprocessor:
    return FeaturePreprocessor.fit(
        table,
        table.column_names,
        standardize=False,
        categorical_encoding="target",
        target=target,
        target_names=names,
    )


def test_the_reference_examples() -> None:
    # regression: the category's mean label (the reference's table)
    t = pa.table({"c": ["category_1", "category_1", "category_2", "category_2"]})
    p = _fit(t, np.array([2.0, 3.0, 1.0, 2.0]))
    assert p.feature_names_out == ["c"]
    assert p.transform(t, dtype=np.float64)[:, 0].tolist() == [2.5, 2.5, 1.5, 1.5]
    # binary classification: the category's share of the positive class (code 1)
    t = pa.table({"c": ["category_1", "category_1", "category_2"]})
    p = _fit(t, np.array([0.0, 1.0, 0.0]))
    assert p.transform(t, dtype=np.float64)[:, 0].tolist() == [0.5, 0.5, 0.0]


def test_null_unseen_and_evaluation_rows() -> None:
    t = pa.table({"c": ["a", "a", None, "b", "z"], "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    # "z" appears only in an evaluation row (NaN target): it encodes as the prior
    p = _fit(t, np.array([1.0, 3.0, 8.0, 4.0, np.nan]))
    prior = (1.0 + 3.0 + 8.0 + 4.0) / 4
    m = p.transform(t, dtype=np.float64)
    assert m[:, 0].tolist() == [2.0, 2.0, 8.0, 4.0, prior]
    assert m[:, 1].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # numbers as they are
    new = pa.table({"c": ["unseen", None], "x": [0.0, 0.0]})
    assert p.transform(new, dtype=np.float64)[:, 0].tolist() == [prior, 8.0]
    # without NULLs in training, a NULL at prediction is the prior too
    q = _fit(pa.table({"c": ["a", "b"]}), np.array([1.0, 3.0]))
    assert q.transform(pa.table({"c": pa.array([None], pa.string())}))[0, 0] == 2.0


def test_multiclass_gives_one_column_per_class() -> None:
    t = pa.table({"c": ["a", "a", "b", "b", None]})
    p = _fit(t, np.array([0.0, 1.0, 2.0, 2.0, 1.0]), ["p", "q", "r"])
    assert p.feature_names_out == ["c=p", "c=q", "c=r"]
    m = p.transform(t, dtype=np.float64)
    np.testing.assert_array_equal(m[0], [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(m[2], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(m[4], [0.0, 1.0, 0.0])
    unseen = p.transform(pa.table({"c": ["zz"]}), dtype=np.float64)
    np.testing.assert_allclose(unseen[0], [0.2, 0.4, 0.4])


def test_round_trip_and_bad_input() -> None:
    t = pa.table({"c": ["a", "b", None], "d": pa.array([True, False, True])})
    p = _fit(t, np.array([1.0, 2.0, 4.0]))
    q = FeaturePreprocessor.from_dict(p.to_dict())
    np.testing.assert_array_equal(q.transform(t), p.transform(t))
    assert q.feature_names_out == p.feature_names_out == ["c", "d"]
    with pytest.raises(InvalidArgument, match="needs the label of every row"):
        FeaturePreprocessor.fit(t, ["c"], standardize=False, categorical_encoding="target")
    with pytest.raises(InvalidArgument, match="needs the label of every row"):
        _fit(t, np.array([1.0]))
