"""MetadataService: record executions with their input and output artifacts; walk lineage.

Artifacts are named by resource paths (``tables/demo.t/versions/3``,
``models/demo.m/versions/2``, ``runs/<id>``, ``file:///…``) and upserted by that path, so every
capability that reads or writes one names the same node. Recording an execution is one
transaction: the artifacts (inserted when new), the execution and its events.

Walking is an iterative breadth-first search over events, one level (artifact → execution →
artifact) at a time with batched ``IN`` queries: any depth, and cycle-safe (a node is expanded
once).

Contexts group nodes (ML Metadata's model): an artifact is *attributed* to a context, an
execution *associated* with one. Each experiment has a context (type ``experiment``, the
experiment's id and name); each run is an execution (kind ``run``, the run's id) associated with
it, which OUTPUTs the run's own artifact (``runs/<id>``) and the model versions registered from
it, and takes as INPUT the table versions it read (:meth:`MetadataService.record_run_io`). A
lineage query can be narrowed to a context: only that context's executions are followed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from shipyard.context import Context
from shipyard.errors import FailedPrecondition, InvalidArgument, NotFound
from shipyard.metadata.entities import (
    Artifact,
    Direction,
    Edge,
    EventType,
    Execution,
    LineageContext,
    LineageGraph,
    Membership,
)
from shipyard.store import Page
from shipyard.store.schema import (
    experiments,
    md_artifacts,
    md_associations,
    md_attributions,
    md_contexts,
    md_events,
    md_executions,
    model_aliases,
    model_versions,
    models,
    runs,
    table_versions,
    utcnow,
)
from shipyard.warehouse import QualifiedName

_IN_CHUNK = 500
DEFAULT_ALIAS = "default"
RESOURCE_SHAPES = (
    "tables/<dataset.table>",
    "tables/<dataset.table>/versions/<n>",
    "models/<dataset.model>",
    "models/<dataset.model>/versions/<n>",
    "runs/<id>",
    "endpoints/<name>",
)
_VERSIONED = re.compile(r"^(tables|models)/([^/]+)(?:/versions/([^/]+))?$")
_RUN = re.compile(r"^runs/([^/]+)$")
_ENDPOINT = re.compile(r"^endpoints/([^/:]+)$")
_CONTEXT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
EXPERIMENT = "experiment"  # the context type experiments get; kept in step by TrackingService
RUN = "run"  # the execution kind (and artifact kind) of a tracked run
# A run's end status as an ML Metadata execution state.
_RUN_STATES = {
    "RUNNING": "RUNNING",
    "FINISHED": "COMPLETE",
    "FAILED": "FAILED",
    "KILLED": "CANCELED",
}


def table_version_uri(name: str, version: int) -> str:
    return f"tables/{QualifiedName.parse(name)}/versions/{version}"


def model_version_uri(name: str, version: int) -> str:
    return f"models/{QualifiedName.parse(name, kind='model')}/versions/{version}"


def _kind_and_name(uri: str) -> tuple[str, str]:
    """The artifact kind and display name a resource path implies."""
    match = _VERSIONED.match(uri)
    if match and match.group(3):
        kind = "table_version" if match.group(1) == "tables" else "model_version"
        return kind, f"{match.group(2)}@{match.group(3)}"
    if _RUN.match(uri):
        return "run", uri.split("/", 1)[1]
    if _ENDPOINT.match(uri):
        return "endpoint", uri.split("/", 1)[1]
    if uri.startswith("file:") or uri.startswith("/"):
        return "file", uri.rsplit("/", 1)[-1] or uri
    return "artifact", uri


class MetadataService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.metadata

    # -- recording ------------------------------------------------------------------------

    def record_execution(
        self,
        kind: str,
        name: str,
        properties: Mapping[str, Any] | None = None,
        *,
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
        description: str | None = None,
        state: str = "COMPLETE",
        artifact_properties: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Execution:
        """Record one execution that read ``inputs`` and wrote ``outputs`` (artifact uris).

        Artifacts are created on first sight (``artifact_properties[uri]`` fills in a new one's
        properties). One transaction.
        """
        ins = list(dict.fromkeys(inputs))
        outs = list(dict.fromkeys(outputs))
        if not kind or not name:
            raise InvalidArgument("an execution needs a kind and a name")
        now = utcnow()
        row: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "name": name[:255],
            "description": description,
            "properties": dict(properties or {}),
            "state": state,
            "created_at": now,
        }
        with self.store.transaction() as conn:
            ids = self._upsert_artifacts(conn, [*ins, *outs], artifact_properties or {}, now)
            conn.execute(insert(md_executions).values(**row))
            events = [
                {
                    "execution_id": row["id"],
                    "artifact_id": ids[u],
                    "type": t.value,
                    "created_at": now,
                }
                for uris, t in ((ins, EventType.INPUT), (outs, EventType.OUTPUT))
                for u in uris
            ]
            if events:
                conn.execute(insert(md_events), events)
        return Execution(**row)

    def _upsert_artifacts(
        self,
        conn: Connection,
        uris: Sequence[str],
        properties: Mapping[str, Mapping[str, Any]],
        now: Any,
    ) -> dict[str, str]:
        wanted = list(dict.fromkeys(uris))
        if not wanted:
            return {}
        found = _artifact_ids(conn, wanted)
        missing = [u for u in wanted if u not in found]
        if missing:
            rows = []
            for uri in missing:
                kind, name = _kind_and_name(uri)
                rows.append(
                    {
                        "id": uuid.uuid4().hex,
                        "kind": kind,
                        "uri": uri,
                        "name": name[:255],
                        "properties": dict(properties.get(uri) or {}),
                        "created_at": now,
                    }
                )
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(md_artifacts).on_conflict_do_nothing(
                index_elements=[md_artifacts.c.uri]
            )
            conn.execute(stmt, rows)
            found.update(_artifact_ids(conn, missing))  # a concurrent writer may have won
        return found

    # -- contexts -------------------------------------------------------------------------

    def create_context(
        self,
        type: str,
        name: str,
        *,
        description: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> LineageContext:
        """A new context (e.g. ``create_context("pipeline", "nightly")``). Experiments get theirs
        when they are created; the ``experiment`` type is theirs alone."""
        type = _check_context_type(type)
        if type == EXPERIMENT:
            raise InvalidArgument(
                f"contexts of type {EXPERIMENT!r} follow experiments: create the experiment "
                f"{name!r} instead (ws.experiments.create)"
            )
        name = _check_context_name(name)
        row: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "type": type,
            "name": name,
            "description": description,
            "properties": dict(properties or {}),
            "created_at": utcnow(),
        }
        exists = f"context {type}/{name} already exists"
        # Inside the transaction: the insert fails at once, before the transaction's own
        # translation (which knows no better message) sees it.
        with self.store.transaction() as conn, self.store.translate_errors(already_exists=exists):
            conn.execute(insert(md_contexts).values(**row))
        return LineageContext(**row)

    def get_context(self, ref: str) -> LineageContext:
        """The context named ``type/name`` (e.g. ``experiment/churn``)."""
        with self.store.connect() as conn:
            return LineageContext(**self._context_row(conn, ref))

    def list_contexts(
        self, *, type: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[LineageContext]:
        """Contexts by type, then name (only ``type``'s when given)."""
        stmt = select(md_contexts)
        if type is not None:
            stmt = stmt.where(md_contexts.c.type == _check_context_type(type))
        with self.store.connect() as conn:
            return self.store.page(
                conn,
                stmt,
                order_by=[md_contexts.c.type, md_contexts.c.name, md_contexts.c.id],
                page_size=page_size,
                page_token=page_token,
                row_to_item=lambda r: LineageContext(**r._mapping),
            )

    def attribute(self, artifact: str, context: str) -> None:
        """Put an artifact (a resource path such as ``tables/d.t/versions/2``) in a context.
        Idempotent."""
        with self.store.transaction() as conn:
            ctx = self._context_row(conn, context)
            uri = self._resolve(conn, artifact)
            ids = self._upsert_artifacts(conn, [uri], {}, utcnow())
            _insert_ignore(
                conn, md_attributions, [{"context_id": ctx["id"], "artifact_id": ids[uri]}]
            )

    def associate(self, execution_id: str, context: str) -> None:
        """Put an execution (by id; a run's execution has the run's id) in a context.
        Idempotent."""
        with self.store.transaction() as conn:
            ctx = self._context_row(conn, context)
            found = conn.execute(
                select(md_executions.c.id).where(md_executions.c.id == execution_id)
            ).first()
            if found is None:
                raise NotFound(f"execution {execution_id!r} not found")
            _insert_ignore(
                conn, md_associations, [{"context_id": ctx["id"], "execution_id": execution_id}]
            )

    @staticmethod
    def _context_row(conn: Connection, ref: str) -> dict[str, Any]:
        type, name = _split_context_ref(ref)
        row = (
            conn.execute(
                select(md_contexts).where(md_contexts.c.type == type, md_contexts.c.name == name)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"context {type}/{name} not found", resource=f"contexts/{type}/{name}")
        return dict(row)

    # -- experiments and runs (called by TrackingService inside its transactions) ----------

    def put_experiment_context(
        self, conn: Connection, experiment_id: str, name: str, *, rename: bool = False
    ) -> None:
        """The experiment's context (created if missing; renamed with it when ``rename``)."""
        if rename:
            conn.execute(
                update(md_contexts).where(md_contexts.c.id == experiment_id).values(name=name)
            )
        row = {
            "id": experiment_id,
            "type": EXPERIMENT,
            "name": name,
            "properties": {},
            "created_at": utcnow(),
        }
        _insert_ignore(conn, md_contexts, [row], key=[md_contexts.c.id])

    def delete_experiment_context(self, conn: Connection, experiment_id: str) -> None:
        """Forget the context (its attributions and associations go with it); the runs'
        executions and what they read and wrote stay in the lineage record."""
        conn.execute(delete(md_contexts).where(md_contexts.c.id == experiment_id))

    def start_run(
        self, conn: Connection, run_id: str, *, new: tuple[str, str, str] | None = None
    ) -> None:
        """Record a run as an execution (the run's id) in its experiment's context, OUTPUTting
        the run's artifact ``runs/<id>``. Idempotent.

        ``new``: ``(run name, experiment id, experiment name)`` of a run created in this very
        transaction — nothing of it can exist yet, so plain inserts do (run creation stays fast).
        """
        now = utcnow()
        if new is not None:
            name, experiment_id, experiment = new
            state = "RUNNING"
        else:
            run = conn.execute(
                select(
                    runs.c.name,
                    runs.c.status,
                    runs.c.experiment_id,
                    experiments.c.name.label("experiment"),
                )
                .join(experiments, experiments.c.id == runs.c.experiment_id)
                .where(runs.c.id == run_id)
            ).first()
            if run is None:
                raise NotFound(f"run {run_id!r} not found", resource=f"runs/{run_id}")
            name, experiment_id, experiment = run.name, run.experiment_id, run.experiment
            state = _RUN_STATES.get(run.status, "RUNNING")
        self.put_experiment_context(conn, experiment_id, experiment)
        execution = {
            "id": run_id,
            "kind": RUN,
            "name": name[:255],
            "description": None,
            "properties": {"run_id": run_id, "experiment": experiment},
            "state": state,
            "created_at": now,
        }
        uri = f"runs/{run_id}"
        member = {"context_id": experiment_id, "created_at": now}
        if new is not None:
            artifact_id = uuid.uuid4().hex
            artifact = {"id": artifact_id, "kind": RUN, "uri": uri, "name": run_id}
            conn.execute(insert(md_executions), [execution])
            conn.execute(insert(md_artifacts), [{**artifact, "properties": {}, "created_at": now}])
            event = {"execution_id": run_id, "artifact_id": artifact_id, "type": "OUTPUT"}
            conn.execute(insert(md_events), [{**event, "created_at": now}])
            conn.execute(insert(md_associations), [{**member, "execution_id": run_id}])
            conn.execute(insert(md_attributions), [{**member, "artifact_id": artifact_id}])
            return
        _insert_ignore(conn, md_executions, [execution], key=[md_executions.c.id])
        artifact_id = self._upsert_artifacts(conn, [uri], {}, now)[uri]
        event = {"execution_id": run_id, "artifact_id": artifact_id, "type": "OUTPUT"}
        _insert_ignore(
            conn,
            md_events,
            [{**event, "created_at": now}],
            key=[md_events.c.execution_id, md_events.c.artifact_id, md_events.c.type],
        )
        _insert_ignore(conn, md_associations, [{**member, "execution_id": run_id}])
        _insert_ignore(conn, md_attributions, [{**member, "artifact_id": artifact_id}])

    def end_run(self, conn: Connection, run_id: str, status: str) -> None:
        """Mark the run's execution COMPLETE, FAILED or CANCELED."""
        conn.execute(
            update(md_executions)
            .where(md_executions.c.id == run_id, md_executions.c.kind == RUN)
            .values(state=_RUN_STATES.get(status, status))
        )

    def record_run_io(
        self,
        run_id: str,
        *,
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
        artifact_properties: Mapping[str, Mapping[str, Any]] | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Record that run ``run_id`` read ``inputs`` and wrote ``outputs`` (artifact uris such
        as ``tables/d.t/versions/3``, ``models/d.m/versions/2``): INPUT and OUTPUT events of the
        run's execution, the artifacts attributed to the run's contexts. Idempotent.

        The model registry calls this for a version whose ``Lineage.run_id`` is set; pass
        ``conn`` to join a transaction already open.
        """
        if conn is None:
            with self.store.transaction() as own:
                self.record_run_io(
                    run_id,
                    inputs=inputs,
                    outputs=outputs,
                    artifact_properties=artifact_properties,
                    conn=own,
                )
            return
        ins, outs = list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))
        self.start_run(conn, run_id)  # runs from before lineage contexts get their execution
        now = utcnow()
        ids = self._upsert_artifacts(conn, [*ins, *outs], artifact_properties or {}, now)
        events = [
            {"execution_id": run_id, "artifact_id": ids[u], "type": t.value, "created_at": now}
            for uris, t in ((ins, EventType.INPUT), (outs, EventType.OUTPUT))
            for u in uris
        ]
        key = [md_events.c.execution_id, md_events.c.artifact_id, md_events.c.type]
        _insert_ignore(conn, md_events, events, key=key)
        contexts = conn.execute(
            select(md_associations.c.context_id).where(md_associations.c.execution_id == run_id)
        ).scalars()
        _insert_ignore(
            conn,
            md_attributions,
            [
                {"context_id": c, "artifact_id": ids[u], "created_at": now}
                for c in list(contexts)
                for u in dict.fromkeys([*ins, *outs])
            ],
        )

    def table_version(self, table: str, version: int | None = None) -> tuple[str, str]:
        """The uri and fingerprint of a table's version (its latest when None)."""
        with self.store.connect() as conn:
            path = f"tables/{table}" if version is None else f"tables/{table}/versions/{version}"
            if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
                raise InvalidArgument(f"invalid version {version!r}: expected an integer >= 1")
            uri = _resolve_versioned(conn, path, *_parse_versioned(path))
            name, number = uri.split("/")[1], int(uri.rsplit("/", 1)[1])
            fingerprint = conn.execute(
                select(table_versions.c.fingerprint).where(
                    table_versions.c.table_name == name, table_versions.c.version == number
                )
            ).scalar()
        if fingerprint is None:
            raise FailedPrecondition(f"table {name} version {number} has no recorded fingerprint")
        return uri, fingerprint

    # -- querying -------------------------------------------------------------------------

    def upstream(self, uri: str, depth: int | None = None) -> LineageGraph:
        """What ``uri`` came from: the executions that wrote it, what they read, and so on."""
        return self._graph(uri, Direction.UPSTREAM, depth)

    def downstream(self, uri: str, depth: int | None = None) -> LineageGraph:
        """What came from ``uri``: the executions that read it, what they wrote, and so on."""
        return self._graph(uri, Direction.DOWNSTREAM, depth)

    def lineage(
        self,
        resource: str,
        direction: str = "both",
        depth: int | None = None,
        context: str | None = None,
    ) -> LineageGraph:
        """Lineage of a resource path; ``models/x.m`` means its default version and
        ``tables/x.t`` its latest version. ``context`` (``type/name``, e.g.
        ``experiment/churn``) narrows the walk to that context's executions."""
        try:
            way = Direction(direction)
        except ValueError:
            raise InvalidArgument(
                f"invalid direction {direction!r}: expected upstream, downstream or both"
            ) from None
        return self._graph(self.resolve(resource), way, depth, context)

    def resolve(self, resource: str) -> str:
        """The artifact uri a resource path names (a version for tables and models)."""
        with self.store.connect() as conn:
            return self._resolve(conn, resource)

    @staticmethod
    def _resolve(conn: Connection, resource: str) -> str:
        if not isinstance(resource, str):
            raise InvalidArgument(f"resource must be a string, got {type(resource).__name__}")
        path = resource.strip().strip("/")
        if path.startswith("v1/"):
            path = path[3:]
        match = _VERSIONED.match(path)
        if match:
            return _resolve_versioned(conn, resource, *match.groups())
        run = _RUN.match(path)
        if run:
            run_id = run.group(1)
            uri = f"runs/{run_id}"
            exists = conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first()
            if exists is None and not _artifact_ids(conn, [uri]):
                raise NotFound(f"run {run_id!r} not found", resource=uri)
            return uri
        if _artifact_ids(conn, [path]) or _ENDPOINT.match(path):
            return path  # an endpoint nothing was deployed to yet has an empty graph
        raise InvalidArgument(
            f"invalid resource {resource!r}: expected one of " + ", ".join(RESOURCE_SHAPES)
        )

    def _graph(
        self, uri: str, direction: Direction, depth: int | None, context: str | None = None
    ) -> LineageGraph:
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)):
            raise InvalidArgument(f"invalid depth {depth!r}: expected an integer >= 0")
        if depth is not None and depth < 0:
            raise InvalidArgument(f"invalid depth {depth}: expected an integer >= 0")
        with self.store.connect() as conn:
            within = None if context is None else self._context_row(conn, context)
            ref = None if within is None else f"{within['type']}/{within['name']}"
            root = conn.execute(select(md_artifacts).where(md_artifacts.c.uri == uri)).first()
            if root is None:  # known to its capability, but nothing recorded yet
                kind, name = _kind_and_name(uri)
                only = Artifact(id="", kind=kind, uri=uri, name=name, created_at=utcnow())
                return LineageGraph(
                    root=uri, direction=direction, depth=depth, artifacts=[only], context=ref
                )
            ways = (
                [Direction.UPSTREAM, Direction.DOWNSTREAM]
                if direction is Direction.BOTH
                else [direction]
            )
            walk = _Walk(conn, None if within is None else within["id"])
            walk.artifact_ids.add(root.id)
            # A run's artifact stands for the run: downstream of it is what the run wrote.
            run_id = uri.split("/", 1)[1] if root.kind == RUN else None
            for way in ways:
                first = {run_id} if run_id and way is Direction.DOWNSTREAM else set()
                walk.walk(root.id, way, depth, walk.allowed(first & _run_executions(conn, first)))
            artifacts = _fetch(conn, md_artifacts, walk.artifact_ids)
            executions = _fetch(conn, md_executions, walk.execution_ids)
            memberships = _memberships(conn, walk.artifact_ids, walk.execution_ids)
            contexts = _fetch(conn, md_contexts, {m.context_id for m in memberships})
        ordered = sorted(artifacts, key=lambda r: (r.id != root.id, r.created_at, r.uri))
        return LineageGraph(
            root=uri,
            direction=direction,
            depth=depth,
            artifacts=[Artifact(**r._mapping) for r in ordered],
            executions=[
                Execution(**r._mapping) for r in sorted(executions, key=lambda r: r.created_at)
            ],
            edges=[
                Edge(execution_id=e, artifact_id=a, type=EventType(t))
                for e, a, t in sorted(walk.edges)
            ],
            context=ref,
            contexts=[
                LineageContext(**r._mapping)
                for r in sorted(contexts, key=lambda r: (r.type, r.name))
            ],
            memberships=memberships,
        )


class _Walk:
    """The nodes and edges one lineage query has reached, optionally within a context."""

    def __init__(self, conn: Connection, context_id: str | None) -> None:
        self.conn = conn
        self.context_id = context_id
        self.artifact_ids: set[str] = set()
        self.execution_ids: set[str] = set()
        self.edges: set[tuple[str, str, str]] = set()

    def allowed(self, execution_ids: set[str]) -> set[str]:
        """The executions that may be followed (those of the context, when narrowed)."""
        if self.context_id is None or not execution_ids:
            return execution_ids
        keys = sorted(execution_ids)
        kept: set[str] = set()
        for i in range(0, len(keys), _IN_CHUNK):
            kept.update(
                self.conn.execute(
                    select(md_associations.c.execution_id).where(
                        md_associations.c.context_id == self.context_id,
                        md_associations.c.execution_id.in_(keys[i : i + _IN_CHUNK]),
                    )
                ).scalars()
            )
        return kept

    def walk(
        self,
        root_id: str,
        way: Direction,
        depth: int | None,
        first: AbstractSet[str] = frozenset(),
    ) -> None:
        """Breadth-first from ``root_id``; ``first``: executions to follow at the first level
        besides those the root's events lead to."""
        conn = self.conn
        # Upstream: the executions that OUTPUT an artifact, then what they took as INPUT.
        near, far = (
            (EventType.OUTPUT, EventType.INPUT)
            if way is Direction.UPSTREAM
            else (EventType.INPUT, EventType.OUTPUT)
        )
        seen_artifacts = {root_id}
        seen_executions: set[str] = set()
        frontier = {root_id}
        level = 0
        while frontier and (depth is None or level < depth):
            found = _events(conn, md_events.c.artifact_id, frontier, near)
            followed = self.allowed({e for e, _, _ in found} - seen_executions)
            self.edges.update(f for f in found if f[0] in followed or f[0] in seen_executions)
            new_executions = (followed | (first if level == 0 else set())) - seen_executions
            seen_executions |= new_executions
            found = _events(conn, md_events.c.execution_id, new_executions, far)
            self.edges.update(found)
            frontier = {a for _, a, _ in found} - seen_artifacts
            seen_artifacts |= frontier
            level += 1
        self.artifact_ids |= seen_artifacts
        self.execution_ids |= seen_executions


def _resolve_versioned(
    conn: Connection, resource: str, collection: str, name: str, version: str | None
) -> str:
    kind = "table" if collection == "tables" else "model"
    qname = str(QualifiedName.parse(name, kind=kind))
    if version is not None:
        if not version.isdigit() or int(version) < 1:
            raise InvalidArgument(
                f"invalid version {version!r} in {resource!r}: expected an integer >= 1"
            )
        number = int(version)
        uri = f"{collection}/{qname}/versions/{number}"
        if kind == "table":
            where = (table_versions.c.table_name == qname) & (table_versions.c.version == number)
            exists = conn.execute(select(table_versions.c.version).where(where)).first()
        else:
            where = (model_versions.c.model_name == qname) & (model_versions.c.version == number)
            exists = conn.execute(select(model_versions.c.version).where(where)).first()
        if exists is None and not _artifact_ids(conn, [uri]):
            raise NotFound(f"{kind} {qname} version {number} not found", resource=uri)
        return uri
    if kind == "table":
        latest = conn.execute(
            select(func.max(table_versions.c.version)).where(table_versions.c.table_name == qname)
        ).scalar()
        if latest is None:
            raise NotFound(
                f"table {qname} not found (no version recorded)", resource=f"tables/{qname}"
            )
        return f"tables/{qname}/versions/{latest}"
    if conn.execute(select(models.c.name).where(models.c.name == qname)).first() is None:
        raise NotFound(f"model {qname} not found", resource=f"models/{qname}")
    default = conn.execute(
        select(model_aliases.c.version).where(
            (model_aliases.c.model_name == qname) & (model_aliases.c.alias == DEFAULT_ALIAS)
        )
    ).scalar()
    if default is None:
        default = conn.execute(
            select(models.c.latest_version).where(models.c.name == qname)
        ).scalar()
    return f"models/{qname}/versions/{default}"


def _artifact_ids(conn: Connection, uris: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i in range(0, len(uris), _IN_CHUNK):
        chunk = uris[i : i + _IN_CHUNK]
        rows = conn.execute(
            select(md_artifacts.c.uri, md_artifacts.c.id).where(md_artifacts.c.uri.in_(chunk))
        )
        found.update({u: a for u, a in rows})
    return found


def _events(
    conn: Connection, column: Any, ids: set[str], type_: EventType
) -> set[tuple[str, str, str]]:
    keys = sorted(ids)
    out: set[tuple[str, str, str]] = set()
    for i in range(0, len(keys), _IN_CHUNK):
        rows = conn.execute(
            select(md_events.c.execution_id, md_events.c.artifact_id, md_events.c.type).where(
                column.in_(keys[i : i + _IN_CHUNK]), md_events.c.type == type_.value
            )
        )
        out.update((e, a, t) for e, a, t in rows)
    return out


def _fetch(conn: Connection, table: Any, ids: set[str]) -> list[Any]:
    keys = sorted(ids)
    rows: list[Any] = []
    for i in range(0, len(keys), _IN_CHUNK):
        rows += conn.execute(select(table).where(table.c.id.in_(keys[i : i + _IN_CHUNK]))).all()
    return rows


def _run_executions(conn: Connection, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        conn.execute(
            select(md_executions.c.id).where(
                md_executions.c.id.in_(sorted(ids)), md_executions.c.kind == RUN
            )
        ).scalars()
    )


def _memberships(
    conn: Connection, artifact_ids: set[str], execution_ids: set[str]
) -> list[Membership]:
    out: list[Membership] = []
    for table, column, ids in (
        (md_attributions, md_attributions.c.artifact_id, artifact_ids),
        (md_associations, md_associations.c.execution_id, execution_ids),
    ):
        keys = sorted(ids)
        for i in range(0, len(keys), _IN_CHUNK):
            rows = conn.execute(
                select(table.c.context_id, column).where(column.in_(keys[i : i + _IN_CHUNK]))
            )
            for context_id, member in rows:
                if table is md_attributions:
                    out.append(Membership(context_id=context_id, artifact_id=member))
                else:
                    out.append(Membership(context_id=context_id, execution_id=member))
    return sorted(out, key=lambda m: (m.context_id, m.artifact_id or "", m.execution_id or ""))


def _insert_ignore(
    conn: Connection, table: Any, rows: list[dict[str, Any]], key: list[Any] | None = None
) -> None:
    """Insert ``rows``, skipping those whose ``key`` (default: the primary key) exists."""
    if not rows:
        return
    now = utcnow()
    rows = [{"created_at": now, **r} for r in rows] if "created_at" in table.c else rows
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    index = key or list(table.primary_key.columns)
    conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=index), rows)


def _check_context_type(type: Any) -> str:
    if not isinstance(type, str) or not _CONTEXT_TYPE.match(type):
        raise InvalidArgument(
            f"invalid context type {type!r}: expected a lower-case word such as "
            f"{EXPERIMENT!r} or 'pipeline' (letters, digits, '_'; at most 32)"
        )
    return type


def _check_context_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 255 or not name.isprintable():
        raise InvalidArgument(
            f"invalid context name {name!r}: expected 1 to 255 printable characters"
        )
    return name


def _split_context_ref(ref: Any) -> tuple[str, str]:
    if not isinstance(ref, str) or "/" not in ref.strip("/"):
        raise InvalidArgument(
            f"invalid context {ref!r}: expected type/name, e.g. 'experiment/churn'"
        )
    type, name = ref.strip("/").split("/", 1)
    return _check_context_type(type), _check_context_name(name)


def _parse_versioned(path: str) -> tuple[str, str, str | None]:
    match = _VERSIONED.match(path)
    if match is None:
        raise InvalidArgument(f"invalid table {path.split('/', 1)[1]!r}: expected dataset.table")
    collection, name, version = match.groups()
    return collection, name, version
