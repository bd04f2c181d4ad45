"""The model's expiration time reaches the SDK the same way embedded and over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def test_expiration_time_is_shown_on_both_faces(ws: Any) -> None:
    ws.load_table("demo.t", [{"x": float(i), "y": 2.0 * i} for i in range(12)])
    ws.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "expiration_timestamp=TIMESTAMP '2041-02-03 04:05:06+00') AS SELECT * FROM demo.t"
    )
    expected = datetime(2041, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert ws.models.get("demo.m").expiration_time == expected
    assert [m.expiration_time for m in ws.models.list().items] == [expected]
