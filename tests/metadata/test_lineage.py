"""Lineage on every metadata backend: load → CREATE MODEL → CREATE TABLE AS ML.PREDICT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import shipyard as sy
from shipyard.client.local import LocalWorkspace
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.metadata.service import MetadataService


@pytest.fixture
def ws(tmp_path: Path, metadata_url: str) -> Iterator[LocalWorkspace]:
    local = LocalWorkspace(
        Context.open(Settings(home=tmp_path / "home", metadata={"url": metadata_url}))
    )
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(1, 9)))
    local.load_table("demo.t", csv)
    local.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    local.sql("CREATE TABLE demo.p AS SELECT * FROM ML.PREDICT(MODEL demo.m, TABLE demo.t)")
    yield local
    local.close()


@pytest.fixture
def md(ws: LocalWorkspace) -> MetadataService:
    return ws.services.metadata


def test_upstream_of_model_shows_table_version_and_statement(md: MetadataService) -> None:
    g = md.lineage("models/demo.m", "upstream")
    assert g.root == "models/demo.m/versions/1"
    assert "tables/demo.t/versions/1" in g.uris
    create = next(e for e in g.executions if e.name == "CREATE_MODEL")
    assert create.kind == "sql_statement"
    assert "CREATE MODEL demo.m" in create.properties["statement"]
    assert create.properties["job_id"]
    # ...and, further up, the load from the file
    assert any(u.startswith("file://") and u.endswith("d.csv") for u in g.uris)
    assert g.artifact("models/demo.m/versions/1").kind == "model_version"  # type: ignore[union-attr]


def test_downstream_of_table_shows_model_and_predictions(md: MetadataService) -> None:
    g = md.downstream("tables/demo.t/versions/1")
    assert {"models/demo.m/versions/1", "tables/demo.p/versions/1"} <= set(g.uris)
    same = md.lineage("tables/demo.t", "downstream")
    assert same.uris == g.uris


def test_depth_limits(md: MetadataService) -> None:
    one = md.lineage("tables/demo.p", "upstream", depth=1)
    # CTAS read the table and the model; the load and the training are two hops away.
    assert set(one.uris) == {
        "tables/demo.p/versions/1",
        "tables/demo.t/versions/1",
        "models/demo.m/versions/1",
    }
    assert [e.name for e in one.executions] == ["CREATE_TABLE_AS_SELECT"]
    zero = md.lineage("tables/demo.p", "upstream", depth=0)
    assert zero.uris == ["tables/demo.p/versions/1"] and zero.executions == []
    full = md.lineage("tables/demo.p", "upstream")
    assert len(full.executions) == 3
    both = md.lineage("models/demo.m/versions/1", "both")
    assert {"tables/demo.t/versions/1", "tables/demo.p/versions/1"} <= set(both.uris)


def test_cycles_terminate(md: MetadataService) -> None:
    md.record_execution("job", "a", inputs=["runs/x1"], outputs=["runs/x2"])
    md.record_execution("job", "b", inputs=["runs/x2"], outputs=["runs/x1"])
    g = md.upstream("runs/x1")
    assert set(g.uris) == {"runs/x1", "runs/x2"} and len(g.executions) == 2


def test_new_versions_get_their_own_nodes(ws: LocalWorkspace, md: MetadataService) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y'])"
        " AS SELECT * FROM demo.p"
    )
    assert md.lineage("models/demo.m").root == "models/demo.m/versions/2"
    up = md.lineage("models/demo.m/versions/2", "upstream", depth=1)
    assert "tables/demo.p/versions/1" in up.uris


def test_unknown_and_malformed_resources(md: MetadataService) -> None:
    for missing in (
        "models/demo.nope",
        "models/demo.m/versions/9",
        "tables/demo.nope",
        "tables/demo.t/versions/7",
        "runs/nope",
    ):
        with pytest.raises(sy.NotFound, match="nope|9|7"):
            md.lineage(missing)
    for bad in ("models", "widgets/x", "models/demo.m/versions/x", "tables/a.b/c", ""):
        with pytest.raises(sy.InvalidArgument):
            md.lineage(bad)
    with pytest.raises(sy.InvalidArgument, match="runs/<id>"):
        md.lineage("widgets/x")
    with pytest.raises(sy.InvalidArgument, match="direction"):
        md.lineage("models/demo.m", "sideways")
    with pytest.raises(sy.InvalidArgument, match="depth"):
        md.lineage("models/demo.m", "upstream", -1)
