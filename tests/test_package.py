"""The public surface and the architecture rules of DESIGN.md, checked on every test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import shipyard

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_is_pinned() -> None:
    assert shipyard.__all__ == [
        "AlreadyExists",
        "ArtifactCorrupted",
        "DeadlineExceeded",
        "FailedPrecondition",
        "Internal",
        "InvalidArgument",
        "JobFailed",
        "NotFound",
        "PayloadTooLarge",
        "PermissionDenied",
        "SQLError",
        "ShipyardError",
        "Unauthenticated",
        "Unavailable",
        "Unsupported",
        "__version__",
        "active_run",
        "autolog",
        "connect",
        "end_run",
        "log_artifact",
        "log_figure",
        "log_input",
        "log_metric",
        "log_metrics",
        "log_param",
        "log_params",
        "log_table",
        "set_experiment",
        "set_tag",
        "set_tags",
        "set_workspace",
        "start_run",
    ]
    for name in shipyard.__all__:
        assert hasattr(shipyard, name), name


def test_every_error_is_a_shipyard_error_with_a_code() -> None:
    from shipyard import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type):
            assert issubclass(cls, errors.ShipyardError), name
            assert errors.error_class_for_code(cls.code) is cls or cls is errors.ShipyardError

    assert issubclass(errors.InvalidArgument, ValueError)
    assert issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.Unsupported, NotImplementedError)


def test_import_shipyard_is_light() -> None:
    """``import shipyard`` loads no model library, web framework or database driver."""
    code = (
        "import sys, shipyard; "
        "heavy = ['xgboost', 'lightgbm', 'sklearn', 'duckdb', 'sqlalchemy', 'fastapi', "
        "'uvicorn', 'torch', 'ray', 'pandas']; "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_dependency_direction() -> None:
    """The layering contracts in pyproject.toml (import-linter) hold."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
