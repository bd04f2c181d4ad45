"""Model flavors: save and load in safe formats, and refuse tampered sklearn files."""

from __future__ import annotations

import os
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import skops.io as sio
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from shipyard.errors import ArtifactCorrupted, InvalidArgument, Unsupported
from shipyard.registry.flavors import FLAVORS, load_model, save_model


@pytest.fixture(scope="module")
def logistic() -> tuple[LogisticRegression, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return LogisticRegression().fit(x, y), x


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_diabetes(return_X_y=True)
    return x.astype(np.float32), y


def test_xgboost_booster_round_trip(tmp_path: Path, diabetes: tuple) -> None:
    x, y = diabetes
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(x, label=y), num_boost_round=5)
    meta = save_model("xgboost", booster, tmp_path)
    assert meta["files"] == ["model.ubj"] and (tmp_path / "model.ubj").is_file()
    assert meta["library_version"] == xgb.__version__ and meta["flavor"] == "xgboost"
    loaded = load_model("xgboost", tmp_path, meta)
    assert isinstance(loaded, xgb.Booster)
    np.testing.assert_array_equal(loaded.inplace_predict(x), booster.inplace_predict(x))


def test_xgboost_sklearn_wrapper_is_stored_as_its_booster(tmp_path: Path, diabetes: tuple) -> None:
    x, y = diabetes
    model = xgb.XGBRegressor(n_estimators=5, max_depth=3).fit(x, y)
    meta = save_model("xgboost", model, tmp_path)
    np.testing.assert_allclose(
        load_model("xgboost", tmp_path, meta).inplace_predict(x), model.predict(x)
    )


def test_lightgbm_round_trip(tmp_path: Path, diabetes: tuple) -> None:
    x, y = diabetes
    booster = lgb.train(
        {"num_leaves": 7, "verbose": -1}, lgb.Dataset(x, label=y), num_boost_round=5
    )
    meta = save_model("lightgbm", booster, tmp_path)
    assert meta["files"] == ["model.txt"]
    loaded = load_model("lightgbm", tmp_path, meta)
    np.testing.assert_array_equal(loaded.predict(x), booster.predict(x))


def test_sklearn_round_trip_records_trusted_types(tmp_path: Path, logistic: tuple) -> None:
    model, x = logistic
    meta = save_model("sklearn", model, tmp_path)
    assert meta["files"] == ["model.skops"]
    assert meta["trusted_types"] == sorted(sio.get_untrusted_types(file=tmp_path / "model.skops"))
    loaded = load_model("sklearn", tmp_path, meta)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_sklearn_file_swapped_for_one_with_a_foreign_type_is_refused(
    tmp_path: Path, logistic: tuple
) -> None:
    meta = save_model("sklearn", logistic[0], tmp_path)
    # An attacker replaces the file with one that would call os.getcwd on use.
    evil = FunctionTransformer(func=os.getcwd)
    sio.dump(evil, tmp_path / "model.skops")
    foreign = sio.get_untrusted_types(file=tmp_path / "model.skops")
    assert foreign  # e.g. ['posix.getcwd']
    with pytest.raises(ArtifactCorrupted, match="not recorded when it was saved") as err:
        load_model("sklearn", tmp_path, meta)
    assert foreign[0] in str(err.value)
    # Even if the manifest was tampered with too, the module allow-list still refuses it.
    forged = {**meta, "trusted_types": foreign}
    with pytest.raises(ArtifactCorrupted, match="outside the allowed modules"):
        load_model("sklearn", tmp_path, forged)


def test_sklearn_model_with_foreign_types_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(Unsupported, match="getcwd"):
        save_model("sklearn", FunctionTransformer(func=os.getcwd), tmp_path)
    assert not (tmp_path / "model.skops").exists()


def test_missing_and_damaged_files_are_reported(tmp_path: Path, diabetes: tuple) -> None:
    with pytest.raises(ArtifactCorrupted, match=r"'model\.ubj' is missing"):
        load_model("xgboost", tmp_path, {"files": ["model.ubj"]})
    (tmp_path / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(ArtifactCorrupted, match="cannot be read"):
        load_model("xgboost", tmp_path, {"files": ["model.ubj"]})
    (tmp_path / "model.skops").write_bytes(b"not a zip")
    with pytest.raises(ArtifactCorrupted, match="cannot be read"):
        load_model("sklearn", tmp_path, {"files": ["model.skops"], "trusted_types": []})


def test_unknown_flavor_names_the_valid_ones(tmp_path: Path) -> None:
    valid = ", ".join(sorted(FLAVORS))  # other flavors join as model types are added
    with pytest.raises(Unsupported, match=rf"'pickle'.*valid flavors: {valid}$"):
        save_model("pickle", object(), tmp_path)
    with pytest.raises(Unsupported, match="valid flavors"):
        load_model("pickle", tmp_path, {})
    assert {"xgboost", "lightgbm", "sklearn", "onnx"} <= set(FLAVORS)


def test_wrong_model_for_flavor_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"xgboost\.Booster or XGBModel"):
        save_model("xgboost", LogisticRegression(), tmp_path)
    with pytest.raises(InvalidArgument, match="does not exist"):
        save_model("xgboost", None, tmp_path / "nope")
