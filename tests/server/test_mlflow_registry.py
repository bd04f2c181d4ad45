"""The real ``mlflow`` client, unmodified, against a real Shipyard server on loopback: artifacts
through the proxied artifact service, ``log_model``, the model registry and loading a registered
model back; what it did is then checked through Shipyard's own services."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from shipyard.cli.main import app
from shipyard.errors import Unsupported
from shipyard.server.app import create_app
from shipyard.server.routers.mlflow_registry import _manifest_fields, mlflow_name, shipyard_name
from shipyard.services import Services


@pytest.fixture
def uri(
    services: Services, live_server: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A server for ``services``, with mlflow's global state pointed at it (and reset after)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    server = live_server(create_app(services))
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    try:
        yield server.url
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.tracking.fluent._active_experiment_id = None
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")
        mlflow.tracking._tracking_service.utils._tracking_uri = None


def test_artifacts_round_trip_byte_for_byte(uri: str, services: Services, tmp_path: Path) -> None:
    mlflow.set_experiment("arts")
    blob = bytes(range(256)) * 1000
    (tmp_path / "blob.bin").write_bytes(blob)
    folder = tmp_path / "report"
    (folder / "sub").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>hi</h1>")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "blob.bin"))
        mlflow.log_artifact(str(tmp_path / "blob.bin"), artifact_path="copies")
        mlflow.log_artifacts(str(folder), artifact_path="report")
        mlflow.log_text("hello, world", "notes/hello.txt")
        mlflow.log_text("ça va", "notes/résumé ü.txt")  # non-ASCII names and spaces
        mlflow.log_dict({"lr": 0.1, "layers": [3, 4]}, "config.json")
    run_id = run.info.run_id
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")

    client = MlflowClient(tracking_uri=uri)
    top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert top == {
        ("blob.bin", False),
        ("config.json", False),
        ("copies", True),
        ("notes", True),
        ("report", True),
    }
    sizes = {f.path: f.file_size for f in client.list_artifacts(run_id, "report/sub")}
    assert sizes == {"report/sub/data.csv": 8}

    out = tmp_path / "out"
    out.mkdir()
    local = client.download_artifacts(run_id, "", str(out))
    assert Path(local, "blob.bin").read_bytes() == blob
    assert Path(local, "copies", "blob.bin").read_bytes() == blob
    assert Path(local, "report", "sub", "data.csv").read_text() == "a,b\n1,2\n"
    assert Path(local, "notes", "hello.txt").read_text() == "hello, world"
    assert Path(local, "notes", "résumé ü.txt").read_text() == "ça va"
    assert json.loads(Path(local, "config.json").read_text()) == {"lr": 0.1, "layers": [3, 4]}
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/hello.txt") == "hello, world"

    # ... the same files through Shipyard's own service
    arts = services.tracking.artifacts
    assert {f.path for f in arts.list_artifacts(run_id, "report")} == {
        "report/index.html",
        "report/sub",
    }
    with arts.open(run_id, "copies/blob.bin") as f:
        assert f.read() == blob


def test_artifact_paths_that_escape_are_refused(uri: str, tmp_path: Path) -> None:
    with mlflow.start_run() as run:
        pass
    base = f"{uri}/api/2.0/mlflow-artifacts/artifacts"
    for bad in ("%2E%2E/%2E%2E/secret.txt", f"x/{run.info.run_id}/%2E%2E/%2E%2E/y"):
        response = requests.put(f"{base}/{bad}", data=b"nope", timeout=10)
        assert response.status_code == 400, bad
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "'..' is not allowed" in response.json()["message"]
    response = requests.get(base, params={"path": "../.."}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    response = requests.get(f"{base}/nothing/here.txt", timeout=10)
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    response = requests.put(f"{base}/registry/mlflow.x/1/MLmodel", data=b"x", timeout=10)
    assert response.status_code == 400  # the registry's view is read-only
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(MlflowException):  # the client refuses '..' before sending anything
        MlflowClient(uri).log_artifact(run.info.run_id, str(tmp_path / "a.txt"), "../up")


def _iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris()
    return data.data, data.target


@pytest.mark.slow
def test_log_register_alias_and_load(uri: str, services: Services) -> None:
    x, y = _iris()
    model = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.set_experiment("iris")
    with mlflow.start_run() as run:
        mlflow.log_param("max_iter", 500)
        # A signature and explicit requirements: inferring either runs the model in a subprocess
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            pip_requirements=["scikit-learn"],
        )
    run_id = run.info.run_id
    assert info.model_id.startswith("m-")

    version = mlflow.register_model(f"runs:/{run_id}/model", "iris-clf")
    assert (version.name, version.version) == ("iris-clf", "1")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias("iris-clf", "champion", 1)

    by_alias = client.get_model_version_by_alias("iris-clf", "champion")
    assert by_alias.version == "1" and by_alias.run_id == run_id
    assert "champion" in by_alias.aliases
    registered = client.get_registered_model("iris-clf")
    assert registered.name == "iris-clf" and registered.aliases["champion"] == "1"
    assert [m.name for m in client.search_registered_models("name = 'iris-clf'")] == ["iris-clf"]
    assert [m.name for m in client.search_registered_models("name LIKE 'iris%'")] == ["iris-clf"]
    assert client.get_model_version("iris-clf", "1").source == f"models:/{info.model_id}"
    assert client.get_model_version_download_uri("iris-clf", "1") == (
        "mlflow-artifacts:/registry/mlflow.iris-clf/1"
    )

    loaded = mlflow.pyfunc.load_model("models:/iris-clf@champion")
    assert (np.asarray(loaded.predict(x)) == model.predict(x)).all()
    native = mlflow.sklearn.load_model("models:/iris-clf/1")
    assert (native.predict_proba(x) == model.predict_proba(x)).all()
    logged = mlflow.sklearn.load_model(f"models:/{info.model_id}")  # the logged model itself
    assert (logged.predict(x) == model.predict(x)).all()
    by_run = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert (np.asarray(by_run.predict(x)) == model.predict(x)).all()

    # A second version from the logged model's own URI; the alias stays on version 1.
    second = mlflow.register_model(f"models:/{info.model_id}", "iris-clf")
    assert second.version == "2"
    assert client.get_model_version_by_alias("iris-clf", "champion").version == "1"
    assert [v.version for v in client.search_model_versions("name = 'iris-clf'")] == ["2", "1"]
    with pytest.warns(FutureWarning):  # stages are deprecated; the call still answers
        assert [v.version for v in client.get_latest_versions("iris-clf")] == ["2"]
    client.delete_registered_model_alias("iris-clf", "champion")
    with pytest.raises(MlflowException) as excinfo:
        client.get_model_version_by_alias("iris-clf", "champion")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    # The same model, version and lineage through Shipyard's own services.
    mv = services.models.get_version("mlflow.iris-clf", 1)
    assert mv.flavor == "mlflow" and mv.model_type == "MLFLOW_SKLEARN"
    assert mv.lineage.run_id == run_id
    assert [c.name for c in mv.signature.inputs] == ["input"]  # a tensor input
    manifest = services.models.manifest("mlflow.iris-clf", 1)
    assert {"MLmodel", "requirements.txt"} <= set(manifest.files)  # the folder, byte for byte
    assert [m.name for m in services.models.list().items] == ["mlflow.iris-clf"]
    upstream = services.metadata.lineage("models/mlflow.iris-clf/versions/1", "upstream")
    assert f"runs/{run_id}" in {node.uri for node in upstream.artifacts}
    with pytest.raises(Unsupported, match="mlflow.pyfunc.load_model"):
        services.models.load("mlflow.iris-clf", 1)
    listed = CliRunner().invoke(app, ["--url", uri, "models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(m["name"], m["model_type"]) for m in json.loads(listed.output)] == [
        ("mlflow.iris-clf", "MLFLOW_SKLEARN")
    ]


def test_registry_errors(uri: str, services: Services) -> None:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with pytest.raises(MlflowException) as excinfo:
        client.get_registered_model("nope")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.create_registered_model("empty")
    assert client.get_registered_model("empty").latest_versions == []
    with pytest.raises(MlflowException) as excinfo:
        client.create_registered_model("empty")
    assert excinfo.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as excinfo:  # alias on a version that does not exist
        client.set_registered_model_alias("empty", "champion", 3)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    for bad in ("IrisClf", "my model", "mlflow.x", "p.d.m"):
        with pytest.raises(MlflowException) as excinfo:
            client.create_registered_model(bad)
        assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE", bad
    with mlflow.start_run() as run:
        pass
    with pytest.raises(MlflowException) as excinfo:  # nothing logged there
        client.create_model_version("empty", f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    assert services.models.get("mlflow.empty").latest_version == 0  # state left intact
    with pytest.raises(MlflowException) as excinfo:
        client.create_model_version("empty", "s3://bucket/model")
    assert excinfo.value.error_code == "NOT_IMPLEMENTED"
    with pytest.raises(MlflowException) as excinfo:
        client.get_logged_model("m-" + "0" * 32)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.delete_registered_model("empty")
    assert not services.models.exists("mlflow.empty")


def test_models_trained_in_sql_are_visible_but_not_downloadable(
    uri: str, services: Services
) -> None:
    services.tables.load("demo.t", pd.DataFrame({"x": range(20), "z": [2 * i for i in range(20)]}))
    services.sql.execute(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['z']) "
        "AS SELECT x, z FROM demo.t"
    )
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.get_registered_model("demo.lin")
    assert [v.version for v in model.latest_versions] == ["1"]
    assert model.aliases == {"default": "1"}
    with pytest.raises(MlflowException) as excinfo:
        client.get_model_version_download_uri("demo.lin", "1")
    assert excinfo.value.error_code == "NOT_IMPLEMENTED"
    assert "ws.models.load" in excinfo.value.message


def test_name_mapping() -> None:
    assert shipyard_name("iris-clf") == "mlflow.iris-clf"
    assert shipyard_name("demo.churn") == "demo.churn"
    assert mlflow_name("mlflow.iris-clf") == "iris-clf"
    assert mlflow_name("demo.churn") == "demo.churn"
    for name in ("iris-clf", "demo.churn", "_x"):
        assert mlflow_name(shipyard_name(name)) == name


MLMODEL_TEXT = """artifact_path: mlflow-artifacts:/1/models/m-1/artifacts
flavors:
  python_function:
    loader_module: mlflow.sklearn
  sklearn:
    serialization_format: skops
mlflow_version: 3.17.2
signature:
  inputs: '[{"type": "double", "name": "sepal length", "required": true}, {"type": "long",
    "name": "n", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
"""


@pytest.mark.parametrize("with_yaml", [True, False])
def test_manifest_from_mlmodel(with_yaml: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MLMODEL_TEXT
    if not with_yaml:  # a server without PyYAML reads flavors and one-line signatures
        monkeypatch.setitem(sys.modules, "yaml", None)
        text = text.replace(', {"type": "long",\n    "name": "n", "required": true}', "")
    fields = _manifest_fields(text)
    assert fields["model_type"] == "MLFLOW_SKLEARN"
    assert fields["flavor_meta"]["flavors"] == ["python_function", "sklearn"]
    inputs = (
        [("sepal length", "double"), ("n", "int64")] if with_yaml else [("sepal length", "double")]
    )
    assert [(c["name"], c["type"]) for c in fields["signature"]["inputs"]] == inputs
    assert fields["signature"]["outputs"] == [{"name": "output", "type": "tensor<int64>[-1]"}]


def test_artifacts_behind_a_token(
    services: Services,
    live_server: Callable[[Any], Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = live_server(create_app(services, token="s3cret"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret")
    client = MlflowClient(tracking_uri=server.url)
    run = client.create_run(client.create_experiment("guarded"))
    (tmp_path / "a.txt").write_text("secret stuff")
    client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"))
    got = client.download_artifacts(run.info.run_id, "a.txt", str(tmp_path))
    assert Path(got).read_text() == "secret stuff"
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts"
    path = f"{run.info.experiment_id}/{run.info.run_id}/artifacts/a.txt"
    assert requests.get(f"{base}/{path}", timeout=10).status_code == 401  # no token, no bytes
