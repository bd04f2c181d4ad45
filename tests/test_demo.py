"""The demo workspace that `make up` shows a new user."""

from __future__ import annotations

from pathlib import Path

from shipyard.config import Settings
from shipyard.context import Context
from shipyard.demo import MODELS, setup
from shipyard.services import Services


def test_demo_loads_real_data_and_trains_evaluated_models(tmp_path: Path) -> None:
    services = Services.build(Context.open(Settings(home=tmp_path)))
    try:
        lines = setup(services)
        tables = {t.name: t.num_rows for t in services.tables.list(dataset="demo").items}
        assert tables == {
            "demo.breast_cancer": 569,
            "demo.diabetes": 442,
            "demo.iris": 150,
            "demo.wine": 178,
        }
        for name in MODELS:
            version = services.models.get_version(f"demo.{name}")
            assert version.metrics, name
            assert version.lineage.input_tables  # trained from a recorded table version
        iris = services.sql.execute("SELECT * FROM ML.EVALUATE(MODEL demo.iris_species)")
        assert iris.to_pylist()[0]["accuracy"] > 0.9
        assert any("demo.iris_species" in line and "accuracy=" in line for line in lines)
        endpoint = services.endpoints.get("cancer")
        assert endpoint.traffic == {"d1": 100}
        row = services.sql.execute("SELECT * FROM demo.breast_cancer LIMIT 1").to_pylist()[0]
        row.pop("diagnosis")
        answer = services.endpoints.predict("cancer", [row])
        assert answer["predictions"][0]["predicted_diagnosis"] in ("benign", "malignant")
        # Running it again (a restart of `make up`) keeps everything as it was.
        setup(services)
        assert services.endpoints.get("cancer").revision == endpoint.revision
        assert services.models.get("demo.iris_species").latest_version == 1
        assert services.tables.get("demo.iris").version == 1
    finally:
        services.close()
