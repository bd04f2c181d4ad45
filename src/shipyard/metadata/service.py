"""MetadataService: record executions with their input and output artifacts; walk lineage.

Artifacts are named by resource paths (``tables/demo.t/versions/3``,
``models/demo.m/versions/2``, ``runs/<id>``, ``file:///…``) and upserted by that path, so every
capability that reads or writes one names the same node. Recording an execution is one
transaction: the artifacts (inserted when new), the execution and its events.

Walking is an iterative breadth-first search over events, one level (artifact → execution →
artifact) at a time with batched ``IN`` queries: any depth, and cycle-safe (a node is expanded
once).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from shipyard.context import Context
from shipyard.errors import InvalidArgument, NotFound
from shipyard.metadata.entities import (
    Artifact,
    Direction,
    Edge,
    EventType,
    Execution,
    LineageGraph,
)
from shipyard.store.schema import (
    md_artifacts,
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
)
_VERSIONED = re.compile(r"^(tables|models)/([^/]+)(?:/versions/([^/]+))?$")
_RUN = re.compile(r"^runs/([^/]+)$")


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

    # -- querying -------------------------------------------------------------------------

    def upstream(self, uri: str, depth: int | None = None) -> LineageGraph:
        """What ``uri`` came from: the executions that wrote it, what they read, and so on."""
        return self._graph(uri, Direction.UPSTREAM, depth)

    def downstream(self, uri: str, depth: int | None = None) -> LineageGraph:
        """What came from ``uri``: the executions that read it, what they wrote, and so on."""
        return self._graph(uri, Direction.DOWNSTREAM, depth)

    def lineage(
        self, resource: str, direction: str = "both", depth: int | None = None
    ) -> LineageGraph:
        """Lineage of a resource path; ``models/x.m`` means its default version and
        ``tables/x.t`` its latest version."""
        try:
            way = Direction(direction)
        except ValueError:
            raise InvalidArgument(
                f"invalid direction {direction!r}: expected upstream, downstream or both"
            ) from None
        return self._graph(self.resolve(resource), way, depth)

    def resolve(self, resource: str) -> str:
        """The artifact uri a resource path names (a version for tables and models)."""
        if not isinstance(resource, str):
            raise InvalidArgument(f"resource must be a string, got {type(resource).__name__}")
        path = resource.strip().strip("/")
        if path.startswith("v1/"):
            path = path[3:]
        with self.store.connect() as conn:
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
            if _artifact_ids(conn, [path]):
                return path
        raise InvalidArgument(
            f"invalid resource {resource!r}: expected one of " + ", ".join(RESOURCE_SHAPES)
        )

    def _graph(self, uri: str, direction: Direction, depth: int | None) -> LineageGraph:
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)):
            raise InvalidArgument(f"invalid depth {depth!r}: expected an integer >= 0")
        if depth is not None and depth < 0:
            raise InvalidArgument(f"invalid depth {depth}: expected an integer >= 0")
        with self.store.connect() as conn:
            root = conn.execute(select(md_artifacts).where(md_artifacts.c.uri == uri)).first()
            if root is None:  # known to its capability, but nothing recorded yet
                kind, name = _kind_and_name(uri)
                only = Artifact(id="", kind=kind, uri=uri, name=name, created_at=utcnow())
                return LineageGraph(root=uri, direction=direction, depth=depth, artifacts=[only])
            ways = (
                [Direction.UPSTREAM, Direction.DOWNSTREAM]
                if direction is Direction.BOTH
                else [direction]
            )
            artifact_ids: set[str] = {root.id}
            execution_ids: set[str] = set()
            edges: set[tuple[str, str, str]] = set()
            for way in ways:
                self._walk(conn, root.id, way, depth, artifact_ids, execution_ids, edges)
            artifacts = _fetch(conn, md_artifacts, artifact_ids)
            executions = _fetch(conn, md_executions, execution_ids)
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
                Edge(execution_id=e, artifact_id=a, type=EventType(t)) for e, a, t in sorted(edges)
            ],
        )

    @staticmethod
    def _walk(
        conn: Connection,
        root_id: str,
        way: Direction,
        depth: int | None,
        artifact_ids: set[str],
        execution_ids: set[str],
        edges: set[tuple[str, str, str]],
    ) -> None:
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
            edges.update(found)
            new_executions = {e for e, _, _ in found} - seen_executions
            seen_executions |= new_executions
            found = _events(conn, md_events.c.execution_id, new_executions, far)
            edges.update(found)
            frontier = {a for _, a, _ in found} - seen_artifacts
            seen_artifacts |= frontier
            level += 1
        artifact_ids |= seen_artifacts
        execution_ids |= seen_executions


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
