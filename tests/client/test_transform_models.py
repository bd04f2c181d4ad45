"""A TRANSFORM model through the SDK, embedded and over HTTP: SQL, registry predict (batch),
online serving and explanation all apply the stored transform to raw rows."""

from __future__ import annotations

from typing import Any

import pytest

_ROWS = [{"x": float(i), "c": "ab"[i % 2], "label": 4.0 * i + 3.0 * (i % 2)} for i in range(40)]
_NEW = [{"x": 500.0, "c": "b"}, {"x": -20.0, "c": "a"}]


def test_every_face_applies_the_training_transform(ws: Any) -> None:
    ws.load_table("d.t", _ROWS)
    ws.sql(
        "CREATE MODEL d.m TRANSFORM(ML.MIN_MAX_SCALER(x) OVER () AS x_m, "
        "ML.STANDARD_SCALER(x) OVER () AS x_s, ML.LABEL_ENCODER(c, 10, 1) OVER () AS c_e, label) "
        "OPTIONS(model_type='linear_reg') AS SELECT * FROM d.t"
    )
    ws.load_table("d.new", _NEW)
    by_sql = [
        r["predicted_label"]
        for r in ws.sql("SELECT * FROM ML.PREDICT(MODEL d.m, TABLE d.new)").to_pylist()
    ]
    batch = ws.models.predict("d.m", _NEW).column("predicted_label").to_pylist()
    assert batch == pytest.approx(by_sql, rel=1e-12)

    ws.endpoints.create("tf")
    ws.endpoints.deploy("tf", "d.m")
    served = ws.endpoints.predict("tf", _NEW)["predictions"]
    values = [p["predicted_label"] if isinstance(p, dict) else p for p in served]
    assert values == pytest.approx(by_sql, rel=1e-9)

    explained = ws.sql(
        "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL d.m, TABLE d.new, STRUCT(3 AS top_k_features))"
    ).to_pylist()
    assert [r["predicted_label"] for r in explained] == pytest.approx(by_sql, rel=1e-9)
    features = {a["feature"] for a in explained[0]["top_feature_attributions"]}
    assert features <= {"x_m", "x_s", "c_e"}
