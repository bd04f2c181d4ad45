"""A workspace with two trained classifiers and a regressor, shared by the serving tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shipyard as sy


def rows(n: int = 300) -> list[dict[str, Any]]:
    """Deterministic rows: two numbers, a category and a binary label that depends on them."""
    out = []
    for i in range(n):
        x = (i * 37 % 101) / 10.0
        z = (i * 13 % 17) / 4.0
        color = ("red", "green", "blue")[i % 3]
        out.append(
            {
                "x": x,
                "z": z,
                "color": color,
                "label": int(x + (2.0 if color == "red" else 0.0) > 5.5),
                "y": 3.0 * x - z + (1.0 if color == "blue" else 0.0),
            }
        )
    return out


def instances(n: int = 5, offset: int = 0) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("x", "z", "color")} for r in rows(n + offset)[offset:]]


def train(ws: Any) -> None:
    ws.load_table("d.train", rows())
    ws.sql(
        "CREATE MODEL d.tree OPTIONS(model_type='BOOSTED_TREE_CLASSIFIER', "
        "input_label_cols=['label'], max_iterations=10) AS SELECT x, z, color, label FROM d.train"
    )
    ws.sql(
        "CREATE MODEL d.logit OPTIONS(model_type='LOGISTIC_REG', input_label_cols=['label']) "
        "AS SELECT x, z, color, label FROM d.train"
    )
    ws.sql(
        "CREATE MODEL d.reg OPTIONS(model_type='LINEAR_REG', input_label_cols=['y']) "
        "AS SELECT x, z, color, y FROM d.train"
    )


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with d.tree, d.logit and d.reg trained once per module (copied per test)."""
    home = tmp_path_factory.mktemp("serving") / "home"
    with sy.connect(home) as ws:
        train(ws)
    return home


@pytest.fixture
def home(trained_home: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(trained_home, copy)
    return copy


@pytest.fixture
def ws(home: Path) -> Iterator[Any]:
    with sy.connect(home) as workspace:
        yield workspace
