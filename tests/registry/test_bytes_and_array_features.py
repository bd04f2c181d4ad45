"""BYTES features one-hot encoded, ARRAY<STRING> features multi-hot encoded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shipyard.errors import InvalidArgument
from shipyard.registry.preprocessing import FeaturePreprocessor

TABLE = pa.table(
    {
        "tags": pa.array([["a", "b"], None, [], ["b", None, "c"], ["a", "a"]]),
        "blob": pa.array([b"x", b"y", None, b"x", b"\x00\xff"]),
    }
)


def test_multi_hot_and_bytes_one_hot() -> None:
    p = FeaturePreprocessor.fit(TABLE, ["tags", "blob"], standardize=True)
    assert p.feature_names_out == [
        "tags=a", "tags=b", "tags=c", "tags=<NULL>",
        "blob=AP8=", "blob=eA==", "blob=eQ==", "blob=<NULL>",
    ]  # fmt: skip
    m = p.transform(TABLE, dtype=np.float64)
    np.testing.assert_array_equal(
        m[:, :4],
        [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1], [1, 0, 0, 0]],
    )
    np.testing.assert_array_equal(m[:, 4:].argmax(axis=1), [1, 2, 3, 1, 0])
    info = {r["input"]: r for r in p.feature_info()}
    assert info["tags"]["category_count"] == 3 and info["tags"]["null_count"] == 1
    again = FeaturePreprocessor.from_dict(p.to_dict())
    np.testing.assert_array_equal(again.transform(TABLE), p.transform(TABLE))
    # unseen elements and bytes: zeros; large_list and large_binary inputs read the same
    new = pa.table(
        {
            "tags": pa.array([["zz", "c"]], type=pa.large_list(pa.string())),
            "blob": pa.array([b"new"], type=pa.large_binary()),
        }
    )
    np.testing.assert_array_equal(p.transform(new, dtype=np.float64)[0], [0, 0, 1, 0, 0, 0, 0, 0])


def test_arrays_stay_multi_hot_under_label_encoding() -> None:
    p = FeaturePreprocessor.fit(
        TABLE, ["tags", "blob"], standardize=False, categorical_encoding="label"
    )
    assert p.feature_names_out == ["tags=a", "tags=b", "tags=c", "tags=<NULL>", "blob"]


def test_numeric_arrays_and_empty_arrays_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="'v'"):
        FeaturePreprocessor.fit(pa.table({"v": pa.array([[1.0], [2.0]])}), ["v"], standardize=True)
    with pytest.raises(InvalidArgument, match="'t' is NULL in every training row"):
        FeaturePreprocessor.fit(
            pa.table({"t": pa.array([[], None], type=pa.list_(pa.string()))}),
            ["t"],
            standardize=True,
        )
    p = FeaturePreprocessor.fit(TABLE, ["tags"], standardize=True)
    with pytest.raises(InvalidArgument, match="an array of strings"):
        p.transform(pa.table({"tags": ["a"]}))
