"""``ws.lineage`` embedded and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import shipyard as sy


def test_lineage_chain(ws: Any, tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n" + "".join(f"{i},{3 * i}\n" for i in range(1, 9)))
    ws.load_table("demo.t", csv)
    ws.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    up = ws.lineage("models/demo.m", direction="upstream", depth=1)
    assert up.root == "models/demo.m/versions/1"
    assert set(up.uris) == {"models/demo.m/versions/1", "tables/demo.t/versions/1"}
    assert [e.name for e in up.executions] == ["CREATE_MODEL"]
    down = ws.lineage("tables/demo.t", direction="downstream")
    assert "models/demo.m/versions/1" in down.uris
    with pytest.raises(sy.NotFound, match="demo.nope"):
        ws.lineage("models/demo.nope")
    with pytest.raises(sy.InvalidArgument, match="tables/"):
        ws.lineage("widgets/x")
