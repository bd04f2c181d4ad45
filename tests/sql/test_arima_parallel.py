"""ARIMA_PLUS series fitted in worker processes give the very results of fitting them in turn.

Real worker processes (``python -m shipyard.sql.arima_parallel``) and real statsforecast. Slow:
each worker imports statsforecast.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from shipyard.sql.arima_parallel import Task, default_workers, fit_series

pytest.importorskip("statsforecast")
pytestmark = pytest.mark.slow

_FIXED = {"auto_arima": False, "max_order": 5, "order": [1, 1, 1], "include_drift": False}
_AUTO = {"auto_arima": True, "max_order": 5, "order": [0, 0, 0], "include_drift": False}


def _tasks(count: int, settings: dict[str, Any]) -> list[Task]:
    rng = np.random.default_rng(4)
    t = np.arange(40)
    out: list[Task] = []
    for i in range(count):
        y = 10 + i + 2 * np.sin(2 * np.pi * t / 7) + rng.normal(size=40).cumsum() * 0.3
        out.append((y, None, 7 if settings["auto_arima"] else 1, settings))
    return out


def _same(a: Any, b: Any) -> None:
    assert not isinstance(a, str) and not isinstance(b, str), (a, b)
    assert a["arma"] == b["arma"] and a["coef"] == b["coef"]
    assert (a["sigma2"], a["loglik"], a["aic"]) == (b["sigma2"], b["loglik"], b["aic"])
    assert np.array_equal(a["residuals"], b["residuals"])


def test_worker_results_equal_fitting_in_turn() -> None:
    tasks = _tasks(4, _FIXED) + _tasks(3, _AUTO)  # both fits, one worker start
    progress: list[float] = []
    in_turn = fit_series(tasks, lambda f, m: progress.append(f), workers=0)
    stats: dict[str, int] = {}
    in_workers = fit_series(tasks, lambda f, m: None, workers=1, local=False, stats=stats)
    assert stats["fitted_by_workers"] == len(tasks)  # every series went through the worker
    for a, b in zip(in_turn, in_workers, strict=True):
        _same(a, b)
    assert progress == sorted(progress) and progress[-1] == pytest.approx(0.95)


def test_a_worker_that_cannot_start_leaves_the_work_to_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = _tasks(3, _FIXED)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    stats: dict[str, int] = {}
    results = fit_series(tasks, lambda f, m: None, workers=1, local=False, stats=stats)
    assert stats["fitted_by_workers"] == 0
    for a, b in zip(fit_series(tasks, lambda f, m: None, workers=0), results, strict=True):
        _same(a, b)


def test_short_jobs_start_no_worker() -> None:
    stats: dict[str, int] = {}
    fit_series(_tasks(4, _FIXED), lambda f, m: None, workers=1, stats=stats)
    assert stats["fitted_by_workers"] == 0  # far below START_AFTER_S of work


def test_a_series_that_cannot_be_fitted_comes_back_as_text() -> None:
    good = _tasks(1, _FIXED)[0]
    bad: Task = (np.arange(5.0), np.ones((4, 1)), 1, _FIXED)  # 5 values, 4 regressor rows
    results = fit_series([good, bad], lambda f, m: None, workers=0)
    assert isinstance(results[0], dict)
    assert isinstance(results[1], str) and "xreg" in results[1]


@pytest.mark.parametrize(
    ("cores", "load", "expected"), [(2, 1.0, 1), (2, 1.4, 1), (2, 1.7, 0), (2, 7.5, 0), (8, 1.0, 7)]
)
def test_workers_start_on_idle_cores_only(
    monkeypatch: pytest.MonkeyPatch, cores: int, load: float, expected: int
) -> None:
    import shipyard.sql.arima_parallel as parallel

    monkeypatch.setattr(parallel, "_cores", lambda: cores)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (load, load, load))
    assert default_workers() == expected
