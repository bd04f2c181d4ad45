"""Every Python example in docs/sql.md runs, in order, as a reader would paste them.

The examples build on each other (one workspace, the tables earlier blocks load); the few that
assume tables the page does not create (``demo.iris`` of the demo workspace, a customers table,
a sensors table) get small stand-ins in every workspace the page opens. Fixed paths in the
page are moved under tmp_path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shipyard as sy

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def _stand_ins(ws: Any) -> None:
    rng = np.random.default_rng(0)
    species = ["setosa", "versicolor", "virginica"]
    ws.load_table(
        "demo.iris",
        [
            {"sepal_length": float(5 + i % 3 + rng.normal()), "species": species[i % 3]}
            for i in range(30)
        ],
    )
    ws.load_table(
        "demo.customers",
        [
            {"tenure": float(t), "spend": float(s), "churned": bool(t < 12 and s < 50)}
            for t, s in zip(rng.integers(1, 60, 200), rng.uniform(10, 100, 200), strict=True)
        ],
    )
    ws.load_table(
        "demo.sensors",
        [{f"s{j}": float(rng.normal()) for j in range(6)} for _ in range(200)],
    )


@pytest.mark.slow
def test_the_python_examples_of_docs_sql_run(tmp_path: Path, monkeypatch: Any) -> None:
    pytest.importorskip("torch")  # the DNN and AUTOENCODER examples
    assert len(BLOCKS) >= 15, "docs/sql.md lost its examples?"
    monkeypatch.chdir(tmp_path)
    opened: list[Any] = []
    try:
        ws = sy.connect(tmp_path / "home")
        opened.append(ws)
        _stand_ins(ws)
        namespace: dict[str, Any] = {"ws": ws, "sy": sy}
        for n, block in enumerate(BLOCKS):
            code = block.replace("/tmp/shipyard-sql-demo", str(tmp_path / "sql-demo"))
            try:
                exec(compile(code, f"docs/sql.md python block {n}", "exec"), namespace)
            except Exception as exc:  # name the block, whose text is in the message
                raise AssertionError(f"docs/sql.md block {n} failed: {exc}\n{block}") from exc
            if namespace.get("ws") is not None and namespace["ws"] not in opened:
                opened.append(namespace["ws"])  # the page opened a workspace of its own
                _stand_ins(namespace["ws"])
    finally:
        for workspace in reversed(opened):
            workspace.close()
