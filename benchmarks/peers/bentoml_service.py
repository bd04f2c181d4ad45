"""BentoML peer for ``bench_serving.py``: the benchmark's XGBoost booster behind a predict API.

BentoML >= 1.2 style (``@bentoml.service`` class, ``@bentoml.api`` method). The model file and the
number of worker processes come from the environment, set by the benchmark:

    BENCH_MODEL=/path/model.ubj BENCH_WORKERS=2 \
        bentoml serve bentoml_service:XGBoostRegressor --host 127.0.0.1 --port 3000

    POST /predict  {"instances": [[x0, …, x19], …]}  ->  [prediction, …]

Runs in its own virtual environment (benchmarks/.envs/bentoml), never imported by Shipyard.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import xgboost as xgb


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")))
class XGBoostRegressor:
    def __init__(self) -> None:
        self.booster = xgb.Booster()
        self.booster.load_model(os.environ["BENCH_MODEL"])

    @bentoml.api
    def predict(self, instances: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(np.asarray(instances, dtype=np.float32))  # type: ignore[no-any-return]
