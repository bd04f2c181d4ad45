"""MLflow peer for ``bench_serving.py``: log the benchmark's booster with ``mlflow.xgboost``.

Runs in its own virtual environment (benchmarks/.envs/mlflow):

    python mlflow_log_model.py MODEL_FILE STORE_DIR

loads the XGBoost booster from MODEL_FILE, logs it with a signature (x0…x19 as double) into a
local tracking store under STORE_DIR (SQLite metadata, local artifact folder: MLflow 3 refuses
the plain file store) and prints the local folder of the logged model as JSON on the last line.
The benchmark then serves that folder with ``mlflow models serve -m FOLDER --env-manager local``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature


def main() -> None:
    model_file, store = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    booster = xgb.Booster()
    booster.load_model(str(model_file))
    names = booster.feature_names or [f"x{i}" for i in range(booster.num_features())]
    store.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench", artifact_location=(store / "artifacts").as_uri())
    sample = pd.DataFrame(np.zeros((2, len(names))), columns=names)
    signature = infer_signature(sample, booster.inplace_predict(sample.to_numpy(np.float32)))
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.xgboost.log_model(booster, name="model", signature=signature)
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    print(json.dumps({"model_uri": info.model_uri, "path": local, "mlflow": mlflow.__version__}))


if __name__ == "__main__":
    main()
