"""Versions whose files did not come from Shipyard's trainers (e.g. an MLflow model folder):
``ModelService.create`` and ``ModelService.register_files``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shipyard as sy
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.services import Services


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = Services.build(Context.open(Settings(home=tmp_path / "home")))
    yield built
    built.close()


def _manifest(run_id: str | None = None) -> dict[str, Any]:
    return {
        "model_type": "MLFLOW_SKLEARN",
        "task": "",
        "signature": {"inputs": [{"name": "x", "type": "double"}], "outputs": []},
        "preprocessing": {},
        "lineage": {"run_id": run_id},
    }


def _folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors:\n  sklearn: {}\n")
    (root / "sub" / "model.skops").write_bytes(b"\x00weights" * 100)
    return root


def test_create_then_register_files(services: Services, tmp_path: Path) -> None:
    models = services.models
    empty = models.create("mlflow.clf", description="iris")
    assert (empty.latest_version, empty.aliases, empty.description) == (0, {}, "iris")
    with pytest.raises(sy.AlreadyExists):
        models.create("mlflow.clf")
    with pytest.raises(sy.NotFound):  # no version yet, so no default alias
        models.get_version("mlflow.clf")

    folder = _folder(tmp_path / "pkg")
    mv = models.register_files("mlflow.clf", folder, flavor="mlflow", manifest=_manifest("r1"))
    assert (mv.version, mv.flavor, mv.model_type, mv.aliases) == (
        1,
        "mlflow",
        "MLFLOW_SKLEARN",
        ["default"],
    )
    assert mv.lineage.run_id == "r1" and [c.name for c in mv.signature.inputs] == ["x"]
    manifest = models.manifest("mlflow.clf", 1)
    data = (folder / "sub" / "model.skops").read_bytes()
    assert manifest.files["sub/model.skops"] == hashlib.sha256(data).hexdigest()
    assert services.ctx.artifacts.get_bytes(manifest.files["MLmodel"]).startswith(b"flavors:")

    # A second call adds version 2 (creating a model is not needed first) and moves default.
    again = models.register_files("mlflow.clf", folder, flavor="mlflow", manifest=_manifest())
    assert again.version == 2 and models.get("mlflow.clf").aliases == {"default": 2}
    fresh = models.register_files("demo.other", folder, flavor="mlflow", manifest=_manifest())
    assert fresh.version == 1
    with pytest.raises(sy.Unsupported, match="MLflow model"):
        models.load("mlflow.clf", 1)


def test_register_files_refuses_bad_input(services: Services, tmp_path: Path) -> None:
    models = services.models
    models.create("mlflow.clf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sy.InvalidArgument, match="empty"):
        models.register_files(
            "mlflow.clf", tmp_path / "empty", flavor="mlflow", manifest=_manifest()
        )
    with pytest.raises(sy.InvalidArgument, match="does not exist"):
        models.register_files(
            "mlflow.clf", tmp_path / "nope", flavor="mlflow", manifest=_manifest()
        )
    with pytest.raises(sy.InvalidArgument):
        models.register_files(
            "no dots", _folder(tmp_path / "p"), flavor="mlflow", manifest=_manifest()
        )
    with pytest.raises(sy.InvalidArgument):
        models.create("Bad Name.x y")
    assert models.get("mlflow.clf").latest_version == 0  # nothing was added
    assert [m.name for m in models.list().items] == ["mlflow.clf"]
