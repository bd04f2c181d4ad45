"""ModelService: register model packages as immutable versions, aliases, and load Predictors.

A version is a folder of files in the content-addressed artifact store plus ``manifest.json``
(itself an artifact). The metadata row points at the manifest's digest, and the manifest lists
every file with its sha256, so a version can never point at half-written or altered bytes:
loading verifies every hash before a byte reaches a deserialiser.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from shipyard.context import Context
from shipyard.errors import (
    AlreadyExists,
    ArtifactCorrupted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unsupported,
)
from shipyard.metadata.service import MetadataService, model_version_uri
from shipyard.registry.entities import (
    DEFAULT_ALIAS,
    MLFLOW_FLAVOR,
    Lineage,
    Manifest,
    Model,
    ModelVersion,
    Signature,
)
from shipyard.registry.flavors import load_model, save_model
from shipyard.registry.predictor import Predictor, PredictorCache
from shipyard.store import Page
from shipyard.store.schema import model_aliases, model_versions, models, utcnow
from shipyard.warehouse import QualifiedName

_ALIAS_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
_PREDICTOR_CACHE_SIZE = 16
# Decoded (task, signature) of recent manifests, by digest: a version row's manifest is JSON of
# tens of kB, and decoding it was most of a get_version call (ML.PREDICT makes several).
_SUMMARY_CACHE_SIZE = 256
# Every column of a version row but the manifest (its summary comes from the cache above).
_ROW_COLUMNS = [c for c in model_versions.c if c.name != "manifest"]


def _lookup_statement() -> Any:
    """One query for a version lookup: the model's row (exists? expired?), each of its aliases
    (one row per alias, or one row with none) and, beside each, the version asked for, by
    number (``:version``) or by alias (``:alias``) -- NULLs where it does not exist. Built once:
    SQLAlchemy keeps its cache key and compiled form, so a lookup costs one round trip."""
    wanted = model_aliases.alias("wanted")
    by_alias = (
        select(wanted.c.version)
        .where(
            wanted.c.model_name == models.c.name,
            wanted.c.alias == bindparam("alias", type_=String),
        )
        .scalar_subquery()
    )
    number = func.coalesce(bindparam("version", type_=Integer), by_alias)
    source = models.outerjoin(model_aliases, model_aliases.c.model_name == models.c.name).outerjoin(
        model_versions,
        and_(model_versions.c.model_name == models.c.name, model_versions.c.version == number),
    )
    return (
        select(
            models.c.expiration_time.label("model_expiration_time_"),
            model_aliases.c.alias.label("alias_"),
            model_aliases.c.version.label("alias_version_"),
            *_ROW_COLUMNS,
        )
        .select_from(source)
        .where(models.c.name == bindparam("name", type_=String))
    )


_LOOKUP = _lookup_statement()
_EXPIRATION = select(models.c.expiration_time).where(models.c.name == bindparam("name"))
_ALIASES = select(model_aliases.c.alias, model_aliases.c.version).where(
    model_aliases.c.model_name == bindparam("name")
)
_MANIFEST = select(model_versions.c.manifest).where(
    model_versions.c.model_name == bindparam("name"),
    model_versions.c.version == bindparam("version"),
)


@dataclass
class NewVersion:
    """What a trainer hands the registry: the model object and its manifest fields."""

    model: Any
    flavor: str
    manifest: dict[str, Any]  # Manifest fields except flavor_meta, files and created_at
    extra_files: dict[str, bytes] = field(default_factory=dict)


class ModelService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._predictors = PredictorCache(_PREDICTOR_CACHE_SIZE)
        self._summaries: OrderedDict[str, tuple[str, Signature]] = OrderedDict()
        self._summaries_lock = threading.Lock()
        self._scope = threading.local()  # .versions: the statement scope's resolved versions

    @contextlib.contextmanager
    def statement_scope(self) -> Iterator[None]:
        """Inside the block, in this thread, a version asked for again is not looked up again.

        One SQL statement resolves a model several times (the ML function's dispatch through
        the ARIMA, TRANSFORM_ONLY and tuning wrappers, then :meth:`load`): in a scope each
        ``(name, version, alias)`` is looked up once, so the statement also sees one version
        of each model throughout. A write through this service (register, aliases, delete)
        empties it; nested scopes share the outermost one.
        """
        if getattr(self._scope, "versions", None) is not None:
            yield
            return
        self._scope.versions = {}
        try:
            yield
        finally:
            self._scope.versions = None

    def _changed(self) -> None:
        """A write: the statement scope (if any) forgets what it resolved."""
        memo = getattr(self._scope, "versions", None)
        if memo:
            memo.clear()

    # -- registering ----------------------------------------------------------------------

    def register(
        self,
        name: str,
        new: NewVersion,
        *,
        replace: bool = False,
        if_not_exists: bool = False,
        description: str | None = None,
        expiration_time: Any = ...,
    ) -> ModelVersion | None:
        """Store ``new`` as the next version of model ``name`` and point ``default`` at it.

        ``replace=False`` refuses an existing model (AlreadyExists), as ``CREATE MODEL`` does;
        ``replace=True`` (``CREATE OR REPLACE``) adds a version and keeps the earlier ones;
        ``if_not_exists=True`` leaves an existing model alone and returns None.
        ``expiration_time`` (as in :meth:`update`; ``...`` leaves it) is set in the same
        transaction as the version: ``CREATE [OR REPLACE] MODEL`` sets it, NULL when not given.
        """
        qname = QualifiedName.parse(name, kind="model")
        if expiration_time is not ...:
            expiration_time = check_expiration(expiration_time, f"model {qname}")
        if not replace and self.exists(str(qname)):
            if if_not_exists:
                return None
            raise AlreadyExists(
                f"model {qname} already exists; use CREATE OR REPLACE MODEL to add a version",
                resource=f"models/{qname}",
            )
        manifest_digest, manifest = self._write_package(new)
        return self._add_version(
            qname,
            manifest_digest,
            manifest,
            replace=replace,
            if_not_exists=if_not_exists,
            description=description,
            expiration_time=expiration_time,
        )

    def create(self, name: str, *, description: str | None = None) -> Model:
        """An empty model, with no version yet (MLflow's ``create_registered_model``).

        AlreadyExists if the model exists. Its first :meth:`register_files` or
        ``CREATE OR REPLACE MODEL`` adds version 1 and points ``default`` at it.
        """
        qname = QualifiedName.parse(name, kind="model")
        now = utcnow()
        with (
            self.ctx.metadata.translate_errors(already_exists=f"model {qname} already exists"),
            self.ctx.metadata.transaction() as conn,
        ):
            conn.execute(
                insert(models).values(
                    name=str(qname),
                    description=description,
                    labels={},
                    latest_version=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        return self.get(str(qname))

    def register_files(
        self,
        name: str,
        folder: str | Path,
        *,
        flavor: str,
        manifest: dict[str, Any],
        description: str | None = None,
    ) -> ModelVersion:
        """Store the files of ``folder`` as the next version of ``name`` (creating the model if
        absent) and point ``default`` at it.

        For packages that were not trained here, e.g. an MLflow model folder (``MLmodel``,
        ``model.pkl``…): the files are copied byte for byte into the content-addressed store
        and listed in the manifest with their sha256, as for any version. ``manifest`` holds the
        Manifest fields except ``flavor``, ``files`` and ``created_at``.
        """
        qname = QualifiedName.parse(name, kind="model")
        root = Path(folder)
        if not root.is_dir():
            raise InvalidArgument(f"model folder {str(root)!r} does not exist")
        artifacts = self.ctx.artifacts
        files = {
            p.relative_to(root).as_posix(): artifacts.put_file(p)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }
        if not files:
            raise InvalidArgument(f"model folder {str(root)!r} is empty")
        full = Manifest(**manifest, flavor=flavor, files=files, created_at=utcnow())
        digest = artifacts.put_bytes(full.model_dump_json(indent=2).encode())
        version = self._add_version(qname, digest, full, replace=True, description=description)
        assert version is not None  # replace=True always adds a version
        return version

    def register_model_object(
        self,
        name: str,
        model: Any,
        *,
        flavor: str | None = None,
        feature_names: Sequence[str] | None = None,
        feature_types: Sequence[str] | None = None,
        task: str | None = None,
        classes: Sequence[Any] | None = None,
        label: str | None = None,
        run_id: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Store a model trained in Python as the next version of ``name`` (creating the model
        if absent) and point ``default`` at it.

        ``model``: a fitted scikit-learn classifier or regressor, XGBoost or LightGBM model
        (see :mod:`shipyard.registry.estimators`), trained on numeric features. Its flavor,
        task and classes are inferred; ``feature_names`` default to the model's own (else
        ``f0, f1, …``), ``feature_types`` to ``double``, ``label`` to ``label`` (the output
        column is ``predicted_<label>``), ``params`` to the estimator's hyperparameters. With
        ``run_id`` the version's ``lineage.run_id`` is that run, and lineage records the run
        as the version's producer.


        Example::

            mv = ws.models.register_object("demo.iris", LogisticRegression().fit(X, y))
        """
        from shipyard.registry.estimators import package_estimator

        qname = QualifiedName.parse(name, kind="model")
        lineage = MetadataService(self.ctx)
        if run_id is not None:
            if not isinstance(run_id, str) or not run_id:
                raise InvalidArgument(f"run_id must be a run's id, got {run_id!r}")
            lineage.resolve(f"runs/{run_id}")  # NotFound before anything is stored
        stored, flavor, manifest = package_estimator(
            model,
            flavor=flavor,
            feature_names=feature_names,
            feature_types=feature_types,
            task=task,
            classes=classes,
            label=label,
            run_id=run_id,
            metrics=metrics,
            params=params,
        )
        version = self.register(
            str(qname),
            NewVersion(model=stored, flavor=flavor, manifest=manifest),
            replace=True,
            description=description,
        )
        assert version is not None  # replace=True always adds a version
        if run_id is not None:
            output = model_version_uri(version.model, version.version)
            lineage.record_run_io(
                run_id,
                outputs=[output],
                artifact_properties={output: {"model_type": version.model_type}},
            )
        return version

    def _add_version(
        self,
        qname: QualifiedName,
        manifest_digest: str,
        manifest: Manifest,
        *,
        replace: bool,
        if_not_exists: bool = False,
        description: str | None = None,
        expiration_time: Any = ...,
    ) -> ModelVersion | None:
        now = utcnow()
        expiring = {} if expiration_time is ... else {"expiration_time": expiration_time}
        self._changed()
        with self.ctx.metadata.translate_errors(), self.ctx.metadata.transaction() as conn:
            # Create the model row if absent (a savepoint absorbs losing a race to another
            # writer), then lock it: concurrent registrations get consecutive versions.
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(models).values(
                            name=str(qname),
                            description=description,
                            labels={},
                            latest_version=0,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                created = True
            except IntegrityError:
                created = False
            if not created and not replace:
                if if_not_exists:
                    return None
                raise AlreadyExists(f"model {qname} already exists", resource=f"models/{qname}")
            latest = conn.execute(
                select(models.c.latest_version).where(models.c.name == str(qname)).with_for_update()
            ).scalar_one()
            version = latest + 1
            conn.execute(
                insert(model_versions).values(
                    model_name=str(qname),
                    version=version,
                    model_type=manifest.model_type,
                    flavor=manifest.flavor,
                    manifest_digest=manifest_digest,
                    manifest=manifest.model_dump(mode="json"),
                    metrics=manifest.metrics,
                    source=manifest.lineage.model_dump(mode="json"),
                    created_at=now,
                )
            )
            conn.execute(
                update(models)
                .where(models.c.name == str(qname))
                .values(latest_version=version, updated_at=now, **expiring)
            )
            self._set_alias(conn, str(qname), DEFAULT_ALIAS, version)
            # read back in the same transaction: what was just written, nothing else
            aliases = self._aliases(conn, str(qname))
            where = (model_versions.c.model_name == str(qname)) & (
                model_versions.c.version == version
            )
            row = conn.execute(select(*_ROW_COLUMNS).where(where)).mappings().one()
        summary = (manifest.task, manifest.signature)
        self._remember(manifest_digest, summary)  # later lookups skip the manifest's decoding
        return _version(row, aliases, summary)

    def _write_package(self, new: NewVersion) -> tuple[str, Manifest]:
        artifacts = self.ctx.artifacts
        with tempfile.TemporaryDirectory(prefix="shipyard-package-") as tmp:
            folder = Path(tmp)
            flavor_meta = save_model(new.flavor, new.model, folder)
            for fname, data in new.extra_files.items():
                (folder / fname).write_bytes(data)
            files = {
                str(p.relative_to(folder)): artifacts.put_file(p)
                for p in sorted(folder.rglob("*"))
                if p.is_file()
            }
        manifest = Manifest(
            **new.manifest,
            flavor=new.flavor,
            flavor_meta=flavor_meta,
            files=files,
            created_at=utcnow(),
        )
        text = manifest.model_dump_json(indent=2).encode()
        return artifacts.put_bytes(text), manifest

    # -- aliases --------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
        qname = self._require(name)
        alias = _check_alias(alias)
        self.get_version(str(qname), version)
        self._changed()
        with self.ctx.metadata.transaction() as conn:
            self._set_alias(conn, str(qname), alias, version)
        return self.get_version(str(qname), version)

    def delete_alias(self, name: str, alias: str) -> None:
        qname = self._require(name)
        alias = _check_alias(alias)
        if alias == DEFAULT_ALIAS:
            raise FailedPrecondition(
                f"the '{DEFAULT_ALIAS}' alias of model {qname} always points at a version; "
                "move it with set_alias instead"
            )
        self._changed()
        with self.ctx.metadata.transaction() as conn:
            gone = conn.execute(
                delete(model_aliases).where(
                    model_aliases.c.model_name == str(qname), model_aliases.c.alias == alias
                )
            ).rowcount
        if not gone:
            raise NotFound(f"model {qname} has no alias {alias!r}")

    @staticmethod
    def _set_alias(conn: Any, name: str, alias: str, version: int) -> None:
        exists = conn.execute(
            select(model_aliases.c.version).where(
                model_aliases.c.model_name == name, model_aliases.c.alias == alias
            )
        ).first()
        values = {"version": version, "updated_at": utcnow()}
        if exists:
            conn.execute(
                update(model_aliases)
                .where(model_aliases.c.model_name == name, model_aliases.c.alias == alias)
                .values(**values)
            )
        else:
            conn.execute(insert(model_aliases).values(model_name=name, alias=alias, **values))

    # -- reading --------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """True if the model exists (an expired model is deleted here, and does not)."""
        qname = QualifiedName.parse(name, kind="model")
        with self.ctx.metadata.connect() as conn:
            row = conn.execute(
                select(models.c.name, models.c.expiration_time).where(models.c.name == str(qname))
            ).first()
        if row is None:
            return False
        return not self._expire_if_due(str(qname), row.expiration_time)

    def get(self, name: str) -> Model:
        qname = self._require(name)
        with self.ctx.metadata.connect() as conn:
            row = conn.execute(select(models).where(models.c.name == str(qname))).mappings().one()
            return self._model(conn, row)

    def list(
        self, *, dataset: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[Model]:
        self.delete_expired()
        stmt = select(models)
        if dataset:
            stmt = stmt.where(models.c.name.like(f"{dataset.lower()}.%"))
        with self.ctx.metadata.connect() as conn:
            return self.ctx.metadata.page(
                conn,
                stmt,
                order_by=[models.c.name],
                page_size=page_size,
                page_token=page_token,
                row_to_item=lambda r: self._model(conn, r._mapping),
            )

    def versions(
        self, name: str, *, page_size: int = 100, page_token: str | None = None
    ) -> Page[ModelVersion]:
        """Newest first."""
        qname = self._require(name)
        stmt = select(model_versions).where(model_versions.c.model_name == str(qname))
        with self.ctx.metadata.connect() as conn:
            aliases = self._aliases(conn, str(qname))
            return self.ctx.metadata.page(
                conn,
                stmt,
                order_by=[model_versions.c.version.desc()],
                page_size=page_size,
                page_token=page_token,
                row_to_item=lambda r: _version(r._mapping, aliases),
            )

    def get_version(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> ModelVersion:
        """A version by number or by alias; neither means the ``default`` alias.

        In a :meth:`statement_scope`, what an earlier call of the scope found.
        """
        memo = getattr(self._scope, "versions", None)
        if memo is None or not _memo_key_ok(name, version, alias):
            return self._get_version(name, version, alias)
        key = (name, version, alias)
        found = memo.get(key)
        if found is None:
            found = memo[key] = self._get_version(name, version, alias)
        return found

    def _get_version(self, name: str, version: int | None, alias: str | None) -> ModelVersion:
        """One query (see ``_LOOKUP``); the errors, in the order :meth:`_require` and
        :meth:`_resolve` give them."""
        qname = QualifiedName.parse(name, kind="model")
        key = str(qname)
        wanted_version, wanted_alias = _lookup_keys(version, alias)
        params = {"name": key, "version": wanted_version, "alias": wanted_alias}
        with self.ctx.metadata.connect() as conn:
            rows = conn.execute(_LOOKUP, params).mappings().all()
        if not rows:
            raise NotFound(f"model {qname} not found", resource=f"models/{qname}")
        self._check_not_expired(qname, rows[0]["model_expiration_time_"])
        aliases = {r["alias_"]: r["alias_version_"] for r in rows if r["alias_"] is not None}
        number = self._resolve(key, version, alias, aliases)
        row = rows[0]
        if row["version"] is None:
            raise NotFound(
                f"model {qname} has no version {number}",
                resource=f"models/{qname}/versions/{number}",
            )
        digest = row["manifest_digest"]
        with self._summaries_lock:
            summary = self._summaries.get(digest)
        if summary is None:  # the digest names the manifest's bytes: never stale
            with self.ctx.metadata.connect() as conn:
                manifest = conn.execute(_MANIFEST, {"name": key, "version": number}).scalar()
            if manifest is None:  # dropped since the lookup above
                raise NotFound(f"model {qname} not found", resource=f"models/{qname}")
            summary = _summary(manifest)
            self._remember(digest, summary)
        return _version(row, aliases, summary)

    def _remember(self, digest: str, summary: tuple[str, Signature]) -> None:
        with self._summaries_lock:
            self._summaries[digest] = summary
            while len(self._summaries) > _SUMMARY_CACHE_SIZE:
                self._summaries.popitem(last=False)

    def manifest(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> Manifest:
        """The manifest as stored in the artifact store, verified against its digest."""
        return self._manifest_of(self.get_version(name, version, alias=alias))

    def _manifest_of(self, mv: ModelVersion) -> Manifest:
        data = self.ctx.artifacts.get_bytes(mv.manifest_digest)
        return Manifest.model_validate_json(data)

    def delete(self, name: str) -> None:
        """Drop a model and all its versions (artifacts stay until garbage-collected)."""
        qname = self._require(name)
        self._drop(qname)

    def _drop(self, qname: QualifiedName) -> None:
        self._changed()
        with self.ctx.metadata.transaction() as conn:
            conn.execute(delete(model_aliases).where(model_aliases.c.model_name == str(qname)))
            conn.execute(delete(model_versions).where(model_versions.c.model_name == str(qname)))
            conn.execute(delete(models).where(models.c.name == str(qname)))
        self._predictors.drop_model(str(qname))

    def update(
        self,
        name: str,
        *,
        description: Any = ...,
        labels: Mapping[str, str] | None = None,
        expiration_time: Any = ...,
    ) -> Model:
        """Set a model's description (``None`` clears it; ``...`` leaves it) and/or replace its
        labels (``ALTER MODEL … SET OPTIONS(description=…, labels=[…])``) and/or its
        expiration time (an aware datetime; ``None``: never expires; a time already passed
        deletes the model at its next lookup)."""
        qname = self._require(name)
        values: dict[str, Any] = {}
        if expiration_time is not ...:
            values["expiration_time"] = check_expiration(expiration_time, f"model {qname}")
        if description is not ...:
            if description is not None and not isinstance(description, str):
                raise InvalidArgument(f"description must be a string, got {description!r}")
            values["description"] = description
        if labels is not None:
            values["labels"] = {str(k): str(v) for k, v in labels.items()}
        if values:
            values["updated_at"] = utcnow()
            self._changed()
            with self.ctx.metadata.transaction() as conn:
                conn.execute(update(models).where(models.c.name == str(qname)).values(**values))
        return self.get(str(qname))

    # -- loading --------------------------------------------------------------------------

    def load(self, name: str, version: int | None = None, *, alias: str | None = None) -> Predictor:
        """A ready Predictor for a version; cached, and verified byte for byte on first load."""
        mv = self.get_version(name, version, alias=alias)
        key = PredictorCache.key(mv.model, mv.version, mv.manifest_digest)
        cached = self._predictors.get(key)
        if cached is not None:
            return cached
        manifest = self._manifest_of(mv)
        check_loadable(mv, manifest)  # before any file is fetched
        folder = self._materialise(mv.manifest_digest, manifest)
        predictor = load_predictor(mv, manifest, folder)
        self._predictors.put(key, predictor)
        return predictor

    def load_trial(
        self, name: str, trial_id: int, version: int | None = None, *, alias: str | None = None
    ) -> Predictor:
        """The Predictor of one hyperparameter-tuning trial of a version (``CREATE MODEL …
        OPTIONS(num_trials=…)``); NotFound if the version has no stored model for that trial.

        A trial's model is extra files of the version (``trial_<id>_…``); its preprocessing and
        label are the version's unless the trial's entry in ``hparam_tuning`` says otherwise.
        """
        mv = self.get_version(name, version, alias=alias)
        key = f"{PredictorCache.key(mv.model, mv.version, mv.manifest_digest)}#trial{trial_id}"
        cached = self._predictors.get(key)
        if cached is not None:
            return cached
        manifest = self._manifest_of(mv)
        trials = (manifest.hparam_tuning or {}).get("trials") or []
        entry = next((t for t in trials if t.get("trial_id") == trial_id), None)
        stored = (entry or {}).get("model")
        if not stored:
            raise NotFound(
                f"model {mv.model} version {mv.version} has no stored model for trial {trial_id}",
                resource=mv.resource,
            )
        check_loadable(mv, manifest)
        folder = self._materialise(mv.manifest_digest, manifest)
        try:
            model = load_model(manifest.flavor, folder, stored["flavor_meta"])
        except (ArtifactCorrupted, FailedPrecondition):
            raise
        except Exception as exc:
            raise ArtifactCorrupted(
                f"trial {trial_id} of model {mv.model} version {mv.version} could not be "
                f"loaded: {exc}",
                resource=mv.resource,
            ) from exc
        predictor = Predictor.from_dict(
            {
                "task": manifest.task,
                "flavor": manifest.flavor,
                "label": manifest.label,
                "preprocessor": stored.get("preprocessing") or manifest.preprocessing,
                "label_info": manifest.label_info,
                # the version's config (e.g. a TRANSFORM) under the trial's own entries
                "config": {**manifest.predictor_config, **(stored.get("predictor_config") or {})},
            },
            model,
        )
        self._predictors.put(key, predictor)
        return predictor

    def _materialise(self, manifest_digest: str, manifest: Manifest) -> Path:
        """Copy the package's files into a local cache folder, verifying every hash."""
        folder = self.ctx.home / "cache" / "packages" / manifest_digest
        marker = folder / ".complete"
        if marker.exists() and package_is_intact(folder, manifest):
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            for fname, digest in manifest.files.items():
                dest = tmp / fname
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.ctx.artifacts.download(digest, dest)
            (tmp / ".complete").write_text(json.dumps(manifest.files))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    # -- helpers --------------------------------------------------------------------------

    def _require(self, name: str) -> QualifiedName:
        qname = QualifiedName.parse(name, kind="model")
        with self.ctx.metadata.connect() as conn:
            row = conn.execute(_EXPIRATION, {"name": str(qname)}).first()
        if row is None:
            raise NotFound(f"model {qname} not found", resource=f"models/{qname}")
        self._check_not_expired(qname, row.expiration_time)
        return qname

    def _check_not_expired(self, qname: QualifiedName, expiration_time: datetime | None) -> None:
        """NotFound (and the model deleted) once its expiration time has passed."""
        if expiration_time is not None and self._expire_if_due(str(qname), expiration_time):
            raise NotFound(
                f"model {qname} not found: it expired at {expiration_time.isoformat()} "
                "and was deleted",
                resource=f"models/{qname}",
            )

    def _resolve(
        self, name: str, version: int | None, alias: str | None, aliases: dict[str, int]
    ) -> int:
        if version is not None and alias is not None:
            raise InvalidArgument("give a version or an alias, not both")
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise InvalidArgument(f"invalid version {version!r}: expected an integer >= 1")
            return version
        alias = _check_alias(alias or DEFAULT_ALIAS)
        if alias not in aliases:
            raise NotFound(
                f"model {name} has no alias {alias!r}; "
                f"aliases: {', '.join(sorted(aliases)) or 'none'}"
            )
        return aliases[alias]

    @staticmethod
    def _aliases(conn: Any, name: str) -> dict[str, int]:
        return {a: v for a, v in conn.execute(_ALIASES, {"name": name})}

    def _model(self, conn: Any, row: Any) -> Model:
        aliases = self._aliases(conn, row["name"])
        model_type = conn.execute(
            select(model_versions.c.model_type).where(
                model_versions.c.model_name == row["name"],
                model_versions.c.version == row["latest_version"],
            )
        ).scalar()
        return Model(
            name=row["name"],
            dataset=row["name"].split(".", 1)[0],
            description=row["description"],
            labels=row["labels"] or {},
            latest_version=row["latest_version"],
            model_type=model_type,
            aliases=aliases,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            expiration_time=row["expiration_time"],
        )

    # -- expiration (OPTIONS(expiration_timestamp=…)) --------------------------------------

    def delete_expired(self) -> Sequence[str]:
        """Delete every model whose expiration time has passed; their names.

        BigQuery deletes an expired model; Shipyard does it lazily: this sweep runs before
        every :meth:`list`, and any lookup of an expired model deletes it and answers NotFound.
        """
        with self.ctx.metadata.connect() as conn:
            due = [
                r.name
                for r in conn.execute(
                    select(models.c.name).where(
                        models.c.expiration_time.is_not(None),
                        models.c.expiration_time <= utcnow(),
                    )
                )
            ]
        for name in due:
            self._drop(QualifiedName.parse(name, kind="model"))
        return due

    def _expire_if_due(self, name: str, expiration_time: datetime | None) -> bool:
        """Delete the model if its expiration time has passed; True if it did."""
        if expiration_time is None or expiration_time > utcnow():
            return False
        self._drop(QualifiedName.parse(name, kind="model"))
        return True


def check_expiration(value: Any, what: str, *, future: bool = False) -> datetime | None:
    """An expiration time as stored: None or an aware datetime (``future``: not yet passed).

    The registry stores a time that has passed (the model is then deleted at its next
    lookup); the SQL statements refuse one (``future=True``), as DROP MODEL is the way to
    delete a model now.
    """
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidArgument(
            f"the expiration time of {what} must be a TIMESTAMP (a time zone-aware datetime) "
            f"or NULL (never expires), got {value!r}"
        )
    if future and value <= utcnow():
        raise InvalidArgument(
            f"the expiration time of {what} must be in the future, got {value.isoformat()}; "
            "DROP MODEL deletes a model now"
        )
    return value.astimezone(UTC)


def load_predictor(mv: ModelVersion, manifest: Manifest, folder: Path) -> Predictor:
    """The Predictor of a version whose files are in ``folder``, already verified.

    Shared by the registry and the remote client, so both load a package the same way.
    """
    check_loadable(mv, manifest)
    try:
        model = load_model(manifest.flavor, folder, manifest.flavor_meta)
    except (ArtifactCorrupted, FailedPrecondition):
        raise
    except Exception as exc:
        raise ArtifactCorrupted(
            f"model {mv.model} version {mv.version} could not be loaded: {exc}",
            resource=mv.resource,
        ) from exc
    return predictor_for(manifest, model)


def check_loadable(mv: ModelVersion, manifest: Manifest) -> None:
    """Unsupported for a version that Shipyard's predictors cannot load (MLflow folders)."""
    if manifest.flavor == MLFLOW_FLAVOR:
        # Its files are MLflow's own format (often a pickle, which runs code when read);
        # MLflow's loaders read it, Shipyard's predictors do not.
        raise Unsupported(
            f"model {mv.model} version {mv.version} is an MLflow model ({mv.model_type}); "
            "Shipyard's predictors do not load MLflow model folders: load it with "
            f"mlflow.pyfunc.load_model('models:/<name>/{mv.version}') against this server",
            resource=mv.resource,
        )


def package_is_intact(folder: Path, manifest: Manifest) -> bool:
    """Every file of the manifest is in ``folder`` with its sha256."""
    return all(sha256_file(folder / f) == d for f, d in manifest.files.items())


def predictor_for(manifest: Manifest, model: Any) -> Predictor:
    """The Predictor a manifest describes, around its loaded model object."""
    return Predictor.from_dict(
        {
            "task": manifest.task,
            "flavor": manifest.flavor,
            "label": manifest.label,
            "preprocessor": manifest.preprocessing,
            "label_info": manifest.label_info,
            "config": manifest.predictor_config,
        },
        model,
    )


def _summary(manifest: dict[str, Any]) -> tuple[str, Signature]:
    """What a ModelVersion takes from its manifest: (task, signature).

    A cached summary's Signature is shared by the versions built from it (validating it was a
    third of a lookup): treat ``ModelVersion.signature`` as read-only.
    """
    return manifest.get("task", ""), Signature.model_validate(manifest["signature"])


def _lookup_keys(version: Any, alias: Any) -> tuple[int | None, str | None]:
    """The ``:version`` and ``:alias`` a lookup binds: what ``_resolve`` would accept, else
    NULL (the version columns come back NULL, and ``_resolve`` then gives its error)."""
    if version is not None:
        ok = isinstance(version, int) and not isinstance(version, bool) and version >= 1
        return (int(version) if ok and alias is None else None), None
    try:
        return None, _check_alias(alias or DEFAULT_ALIAS)
    except InvalidArgument:
        return None, None


def _memo_key_ok(name: Any, version: Any, alias: Any) -> bool:
    """Arguments a statement scope may memoise (anything odd goes to the lookup's checks)."""
    return (
        isinstance(name, str)
        and (version is None or type(version) is int)
        and (alias is None or isinstance(alias, str))
    )


def _version(
    row: Any, aliases: dict[str, int], summary: tuple[str, Signature] | None = None
) -> ModelVersion:
    task, signature = summary if summary is not None else _summary(row["manifest"])
    return ModelVersion(
        model=row["model_name"],
        version=row["version"],
        model_type=row["model_type"],
        flavor=row["flavor"],
        task=task,
        aliases=sorted(a for a, v in aliases.items() if v == row["version"]),
        metrics=row["metrics"] or {},
        signature=signature,
        lineage=Lineage.model_validate(row["source"] or {}),
        manifest_digest=row["manifest_digest"],
        created_at=row["created_at"],
    )


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not alias or not set(alias.lower()) <= _ALIAS_CHARS:
        raise InvalidArgument(
            f"invalid alias {alias!r}: use letters, digits, '_' and '-' (e.g. 'champion')"
        )
    if alias.isdigit():
        raise InvalidArgument(f"invalid alias {alias!r}: an alias cannot be a number")
    return alias.lower()


def sha256_file(path: Path) -> str:
    if not path.is_file():
        return ""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
