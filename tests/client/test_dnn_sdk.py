"""DNN and AUTOENCODER models through the SDK, embedded and over HTTP: SQL training, the
``torch`` package loaded by the client (ws.models.load downloads it when remote), ML.PREDICT
parity, and online prediction through an endpoint."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")


def _rows(n: int = 120) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        x, z = (i * 37 % 101) / 10.0, (i * 13 % 17) / 4.0
        color = ("red", "green", "blue")[i % 3]
        out.append({"x": x, "z": z, "color": color, "label": int(x + (color == "red") * 2 > 5.5)})
    return out


def test_dnn_classifier_serves_the_same_answers_as_ml_predict(ws: Any) -> None:
    ws.load_table("d.train", _rows())
    ws.sql(
        "CREATE MODEL d.dnn OPTIONS(model_type='DNN_LINEAR_COMBINED_CLASSIFIER', "
        "hidden_units=[8], batch_size=16, learn_rate=0.01, max_iterations=15) "
        "AS SELECT * FROM d.train"
    )
    batch = [{k: r[k] for k in ("x", "z", "color")} for r in _rows(9)]
    want = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL d.dnn, (SELECT x, z, color FROM d.train LIMIT 9))"
    ).to_arrow()
    loaded = ws.models.load("d.dnn")
    assert loaded.flavor == "torch"
    local = loaded.predict(want.select(["x", "z", "color"]))
    assert local["predicted_label"].to_pylist() == want["predicted_label"].to_pylist()
    ws.endpoints.create("dnn")
    ws.endpoints.deploy("dnn", "d.dnn")
    served = ws.endpoints.predict("dnn", batch)["predictions"]
    assert [p["predicted_label"] for p in served] == want["predicted_label"].to_pylist()
    for got, expected in zip(served, want["predicted_label_probs"].to_pylist(), strict=True):
        probs = [p["prob"] for p in got["predicted_label_probs"]]
        assert probs == pytest.approx([p["prob"] for p in expected])
    accuracy = ws.sql("SELECT accuracy FROM ML.EVALUATE(MODEL d.dnn, TABLE d.train)").to_arrow()
    assert accuracy["accuracy"][0].as_py() > 0.8


def test_autoencoder_latent_space_online(ws: Any) -> None:
    ws.load_table("d.points", [{k: r[k] for k in ("x", "z", "color")} for r in _rows()])
    ws.sql(
        "CREATE MODEL d.ae OPTIONS(model_type='AUTOENCODER', hidden_units=[4, 2, 4], "
        "batch_size=16, max_iterations=3) AS SELECT * FROM d.points"
    )
    ws.endpoints.create("ae")
    ws.endpoints.deploy("ae", "d.ae")
    served = ws.endpoints.predict("ae", [{"x": 1.0, "z": 2.0, "color": "red"}])["predictions"]
    assert set(served[0]) == {"latent_col_1", "latent_col_2"}
    want = (
        ws.sql(
            "SELECT latent_col_1, latent_col_2 FROM ML.PREDICT(MODEL d.ae, "
            "(SELECT 1.0 AS x, 2.0 AS z, 'red' AS color))"
        )
        .to_arrow()
        .to_pylist()[0]
    )
    assert served[0] == pytest.approx(want)
