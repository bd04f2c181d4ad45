"""SqlService: BigQuery ML SQL on the DuckDB warehouse.

A script is parsed with the BigQuery ML dialect, then each statement runs:

* ``CREATE MODEL`` / ``DROP MODEL`` are Shipyard's own (never sent to DuckDB);
* anything else runs in DuckDB. An ``ML.*`` table function inside it is executed by running its
  input relation in DuckDB to Arrow, running the model on it, registering the result on a cursor
  private to this statement and replacing the function with a reference to it; the rewritten
  statement then runs in DuckDB as a whole (WHERE, JOIN, CTE, GROUP BY, CREATE TABLE AS …).

Every statement runs as a job (``kind="query"``), so it is listed, logged and cancellable.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from shipyard.context import Context
from shipyard.data.service import TableService
from shipyard.engine import Job, JobContext
from shipyard.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SQLError,
    Unsupported,
    error_class_for_code,
)
from shipyard.metadata.service import MetadataService, model_version_uri, table_version_uri
from shipyard.registry.service import ModelService
from shipyard.sql.alter import alter_model
from shipyard.sql.create_model import create_model, tables_read
from shipyard.sql.dialect import (
    ML_REMOTE_MODEL_FUNCTIONS,
    AlterModel,
    ExportModel,
    MLDataFunction,
    MLFunction,
    ShipyardBigQuery,
    parse,
    struct_values,
    table_name,
    to_duckdb,
)
from shipyard.sql.entities import QueryResult
from shipyard.sql.export import export_model
from shipyard.sql.functions import DATA_HANDLERS, ML_HANDLERS, DataCall, MLCall
from shipyard.sql.imported import refuse_imported
from shipyard.sql.temp_models import TempModels
from shipyard.sql.tfdv_validate import UDF_NAME, UDF_PARAMETERS, tfdv_validate_udf
from shipyard.warehouse import QualifiedName, fetch_arrow

_RESULT_CACHE_SIZE = 32
# Parsed scripts kept for a repeated text (parsing is 0.25-1 ms, a copy of the tree a tenth of
# it): up to this many, of at most this many characters.
_PARSE_CACHE_SIZE = 64
_PARSE_CACHE_CHARS = 4096
# DuckDB statements that write the table they name: record a new table version afterwards.
_WRITES = {
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
}


class SqlService:
    def __init__(
        self,
        ctx: Context,
        tables: TableService,
        models: ModelService,
        metadata: MetadataService | None = None,
    ) -> None:
        self.ctx = ctx
        self.tables = tables
        self.models = models
        self.metadata = metadata
        self._results: OrderedDict[str, QueryResult] = OrderedDict()
        self._lock = threading.Lock()
        self._names = itertools.count()
        self._parsed: OrderedDict[str, list[exp.Expression]] = OrderedDict()
        # DuckDB SQL of one-statement scripts, by their text (see _duckdb_text); bounded alike.
        self._duckdb_texts: OrderedDict[tuple[str, str], str] = OrderedDict()
        # ML.TFDV_VALIDATE's Python function (the SQL rewrite calls it), seen by every cursor
        ctx.warehouse.register_function(
            UDF_NAME,
            tfdv_validate_udf,
            [t for _, t in UDF_PARAMETERS],
            "VARCHAR",
            type="native",
            null_handling="special",
            side_effects=False,
        )

    # -- entry points ---------------------------------------------------------------------

    def execute(self, sql: str) -> QueryResult:
        """Run a script and return the last statement's result (waits)."""
        statements = self._parse(sql)

        def run(job: JobContext) -> QueryResult:
            result = self._run_script(job, sql, statements)
            result.job_id = job.job_id
            return result

        # The job's record keeps what submit's keeps: the result's info (never its repr, which
        # formats rows).
        _, result = self.ctx.engine.run(
            "query",
            run,
            description=_describe(sql),
            params={"sql": sql},
            summary=QueryResult.info,
        )
        return result

    def submit(self, sql: str) -> Job:
        """Start a script as a background job; fetch its rows later with :meth:`result`."""
        statements = self._parse(sql)  # a syntax error is reported now, not in the job

        def run(job: JobContext) -> dict[str, Any]:
            result = self._run_script(job, sql, statements)
            result.job_id = job.job_id
            with self._lock:
                self._results[job.job_id] = result
                while len(self._results) > _RESULT_CACHE_SIZE:
                    self._results.popitem(last=False)
            return result.info()

        job = self.ctx.engine.submit("query", run, description=_describe(sql), params={"sql": sql})
        return job

    def _parse(self, sql: str) -> list[exp.Expression]:
        """``parse(sql)``, from a cache for a short text seen before: each caller gets its own
        copy of the trees (statements are rewritten in place as they run)."""
        if not isinstance(sql, str) or len(sql) > _PARSE_CACHE_CHARS:
            return parse(sql)
        with self._lock:
            cached = self._parsed.get(sql)
            if cached is not None:
                self._parsed.move_to_end(sql)
        if cached is None:
            cached = parse(sql)  # a syntax error is raised here, and nothing is kept
            with self._lock:
                self._parsed[sql] = cached
                while len(self._parsed) > _PARSE_CACHE_SIZE:
                    self._parsed.popitem(last=False)
        return [statement.copy() for statement in cached]

    def result(self, job_id: str) -> QueryResult:
        """The rows of a finished query job (kept in memory for the latest few jobs)."""
        job = self.ctx.engine.get(job_id)
        if job.kind != "query":
            raise InvalidArgument(f"job {job_id} is a {job.kind!r} job, not a query")
        if not job.state.done:
            raise FailedPrecondition(f"job {job_id} is still {job.state.value}")
        with self._lock:
            result = self._results.get(job_id)
        if result is None:
            if job.error:
                err = job.error
                raise error_class_for_code(err.get("code", "INTERNAL"))(
                    err.get("message", "the job failed"), **(err.get("details") or {})
                )
            raise NotFound(f"the rows of job {job_id} are no longer kept; run the query again")
        return result

    # -- statements -----------------------------------------------------------------------

    def _run_script(
        self, job: JobContext, sql: str, statements: list[exp.Expression]
    ) -> QueryResult:
        result = QueryResult(pa.table({}), statement_type="NONE")
        temp = TempModels(job.job_id, len(statements))  # CREATE TEMP MODEL: dropped at the end
        try:
            for i, statement in enumerate(statements):
                job.check_cancelled()
                statement = temp.rewrite(statement)
                text = sql if len(statements) == 1 else statement.sql(dialect=ShipyardBigQuery)
                whole = len(statements) == 1  # the statement is the script, as parsed
                result = self._run_statement(job, statement, text, script=sql if whole else None)
                if len(statements) > 1:
                    job.log(f"statement {i + 1}/{len(statements)}: {result.statement_type}")
        finally:
            for name in temp.drop(self.models):
                job.log(f"dropped TEMP model {name}")
        return result

    def _run_statement(
        self, job: JobContext, statement: exp.Expression, text: str, script: str | None = None
    ) -> QueryResult:
        if isinstance(statement, exp.Create) and statement.kind == "MODEL":
            return create_model(self, job, statement, text)
        if isinstance(statement, exp.Drop) and statement.kind == "MODEL":
            return self._drop_model(statement)
        if isinstance(statement, AlterModel):
            return alter_model(self, statement)
        if isinstance(statement, ExportModel):
            return export_model(self, statement)
        with self.models.statement_scope():  # each model looked up once in the statement
            return self._run_query(statement, job, text, script=script)

    def _drop_model(self, statement: exp.Drop) -> QueryResult:
        names = [table_name(t) for t in statement.args.get("tables") or [statement.this]]
        dropped = []
        for name in names:
            qname = QualifiedName.parse(name, kind="model")
            if not self.models.exists(str(qname)):
                if statement.args.get("exists"):
                    continue
                raise NotFound(f"model {qname} not found", resource=f"models/{qname}")
            self.models.delete(str(qname))
            dropped.append(str(qname))
        message = f"dropped model {', '.join(dropped)}" if dropped else "no model to drop"
        return QueryResult(pa.table({}), statement_type="DROP_MODEL", message=message)

    def _run_query(
        self,
        statement: exp.Expression,
        job: JobContext | None = None,
        text: str | None = None,
        *,
        script: str | None = None,
    ) -> QueryResult:
        """Run a DuckDB statement (ML functions included). ``statement`` is the caller's own
        tree: its ML functions are replaced in place, without a copy. ``script``: the text
        ``statement`` was parsed from, when it is the whole script (see :meth:`_duckdb_text`)."""
        statement_type, written = _statement_type(statement)
        # What the statement reads, resolved before it runs (cheap: metadata lookups, no hashing).
        reads = self._reads(statement, written) if written is not None else None
        if written is not None and text is None:
            text = statement.sql(dialect=ShipyardBigQuery)  # before the rewrite
        writes = statement_type != "SELECT"
        if writes:
            self.tables.forget()  # DDL and DML may touch any table
        try:
            rows = self._query_arrow(statement, script)
        finally:
            if writes:  # again: a concurrent read may have looked while this one wrote
                self.tables.forget()
        table = None
        if written is not None:
            qname = QualifiedName.parse(written)
            if self.ctx.warehouse.exists(qname):
                version = self.tables.record_version(
                    qname, {"kind": "sql", "statement": statement_type}
                )
                table = str(qname)
                if self.metadata is not None and reads is not None:
                    output = table_version_uri(table, version.version)
                    self.metadata.record_execution(
                        "sql_statement",
                        statement_type,
                        {
                            "statement": text,
                            "statement_type": statement_type,
                            "job_id": job.job_id if job is not None else None,
                        },
                        inputs=[u for u in reads if u != output],
                        outputs=[output],
                        artifact_properties={output: {"fingerprint": version.fingerprint}},
                    )
        if statement_type != "SELECT" and rows.column_names == ["Count"]:
            # DuckDB reports a count for every write; BigQuery only for DML.
            dml = statement_type in _WRITES.values()
            rows = rows.rename_columns(["num_dml_affected_rows"]) if dml else pa.table({})
        return QueryResult(rows, statement_type=statement_type, table_name=table)

    def _reads(self, statement: exp.Expression, written: str) -> list[str]:
        """Artifact uris of the table versions and model versions ``statement`` reads, as far
        as the metadata already knows them (the latest recorded table version; the model's
        default version)."""
        if self.metadata is None:
            return []
        uris: list[str] = []
        target = str(QualifiedName.parse(written))
        for name in tables_read(statement):
            if name == target:
                continue
            latest = self.tables.latest_version(QualifiedName.parse(name))
            if latest is not None:
                uris.append(table_version_uri(name, latest.version))
        for node in statement.find_all(exp.Predict, MLFunction):
            model = node.this if isinstance(node, exp.Expression) else None
            if model is None:
                continue
            try:
                name = str(QualifiedName.parse(table_name(model), kind="model"))
                uris.append(model_version_uri(name, self.models.get_version(name).version))
            except (NotFound, InvalidArgument):
                continue  # the statement itself reports it
        return list(dict.fromkeys(uris))

    # -- ML table functions ---------------------------------------------------------------

    def query_arrow(self, statement: exp.Expression) -> pa.Table:
        """Run one statement (ML functions included) on a private cursor; rows as Arrow."""
        return self._query_arrow(statement.copy())  # ML functions are replaced in the copy

    def _query_arrow(self, tree: exp.Expression, script: str | None = None) -> pa.Table:
        cur = self.ctx.warehouse.cursor()
        try:
            with self.models.statement_scope():  # each model looked up once
                results = self.materialise_ml_functions(
                    cur, tree, register_last=False, script=script
                )
            direct = _passthrough(tree, results)
            if direct is not None:  # the last result is the answer: DuckDB never reads it
                return direct
            if results:
                name = next(reversed(results))
                cur.register(name, results[name])
            key = None if results or script is None else ("statement", script)
            return fetch_arrow(cur, self._duckdb_text(key, lambda: to_duckdb(tree)))
        finally:
            cur.close()  # and with it every table registered on it

    def _duckdb_text(self, key: tuple[str, str] | None, write: Callable[[], str]) -> str:
        """``write()``: DuckDB SQL written from a tree that is a pure function of ``key``'s
        script text (``parse(script)`` unchanged, or the input of its only ML function), so
        from a cache keyed by that text: writing it copies and walks the tree (~0.1 ms of a
        1 ms statement). No key, no cache."""
        if key is None or len(key[1]) > _PARSE_CACHE_CHARS:
            return write()
        with self._lock:
            text = self._duckdb_texts.get(key)
            if text is not None:
                self._duckdb_texts.move_to_end(key)
                return text
        text = write()
        with self._lock:
            self._duckdb_texts[key] = text
            while len(self._duckdb_texts) > _PARSE_CACHE_SIZE:
                self._duckdb_texts.popitem(last=False)
        return text

    def materialise_ml_functions(
        self,
        cur: duckdb.DuckDBPyConnection,
        tree: exp.Expression,
        *,
        register_last: bool = True,
        script: str | None = None,
    ) -> dict[str, pa.Table]:
        """Replace every ML.* call in ``tree`` (in place) by a table registered on ``cur``.

        A call runs once its input relation (and the CTEs that relation reads) holds no other
        pending call, so nested calls and calls inside CTEs resolve inner first. Returns the
        tables by name, in the order they ran. ``register_last=False`` leaves the last one off
        ``cur`` (registering costs ~0.3 ms, and ``SELECT * FROM ML.PREDICT(…)`` never reads it):
        the caller registers it before DuckDB runs ``tree``. ``script``: the text ``tree`` was
        parsed from, unchanged; with one ML function, its input's DuckDB SQL is kept by it.
        """
        registered: dict[str, pa.Table] = {}
        pending = [
            n
            for n in tree.find_all(exp.Predict, MLFunction, MLDataFunction)
            if isinstance(n, exp.Expression)
        ]
        # One call: its input holds no replaced call (whose name changes every time)
        key = ("input", script) if script is not None and len(pending) == 1 else None
        ctes = _ctes(tree)
        while pending:
            ready = next((n for n in pending if not _blocked(n, pending, ctes)), None)
            if ready is None:  # pragma: no cover - a cycle cannot be written in SQL
                raise SQLError("ML functions depend on each other in a cycle")
            pending.remove(ready)
            name, table = self._materialise(cur, ready, ctes, key)
            if pending or register_last:
                cur.register(name, table)
            registered[name] = table
        return registered

    def _materialise(
        self,
        cur: duckdb.DuckDBPyConnection,
        node: exp.Expression,
        ctes: dict[str, exp.CTE],
        key: tuple[str, str] | None = None,
    ) -> tuple[str, pa.Table]:
        if isinstance(node, MLDataFunction):
            out = self._run_data_function(cur, node, ctes)
        else:
            out = self._run_model_function(cur, node, ctes, key)
        name = f"__shipyard_ml_{next(self._names)}"
        replacement: exp.Expression = exp.Table(this=exp.to_identifier(name))  # no parse
        target = node.parent if isinstance(node.parent, exp.Table) else node
        alias = target.args.get("alias") if isinstance(target, exp.Table) else None
        if alias is not None:
            replacement.set("alias", alias)
        target.replace(replacement)
        return name, out

    def _run_model_function(
        self,
        cur: duckdb.DuckDBPyConnection,
        node: exp.Expression,
        ctes: dict[str, exp.CTE],
        key: tuple[str, str] | None,
    ) -> pa.Table:
        function = node.function if isinstance(node, MLFunction) else "PREDICT"
        handler = ML_HANDLERS.get(function)
        if function in ML_REMOTE_MODEL_FUNCTIONS:
            raise Unsupported(
                f"ML.{function} runs a remote model (a hosted LLM or Cloud AI API endpoint); "
                "Shipyard trains and serves its models locally and has no remote models"
            )
        if handler is None:
            raise Unsupported(
                f"ML.{function} is not supported yet; supported: "
                + ", ".join(f"ML.{f}" for f in sorted([*ML_HANDLERS, *DATA_HANDLERS]))
            )
        model_name = str(QualifiedName.parse(table_name(node.this), kind="model"))
        if function != "PREDICT":
            refuse_imported(self, function, model_name)  # imported models: ML.PREDICT only
        relation = node.args.get("expression")
        rows = None
        if relation is not None:
            text = self._duckdb_text(key, lambda: to_duckdb(_relation_query(relation, ctes)))
            rows = fetch_arrow(cur, text)
        call = MLCall(
            function=function,
            model=model_name,
            input=rows,
            params=struct_values(node.args.get("params_struct")),
        )
        return handler(self, call)

    def _run_data_function(
        self, cur: duckdb.DuckDBPyConnection, node: MLDataFunction, ctes: dict[str, exp.CTE]
    ) -> pa.Table:
        handler = DATA_HANDLERS.get(node.function)
        if handler is None:
            raise Unsupported(f"ML.{node.function} is not supported yet")
        relations = [to_duckdb(_relation_query(relation, ctes)) for relation in node.expressions]
        params = struct_values(node.args.get("params_struct"))
        for kwarg in node.args.get("named") or []:  # name => value: DuckDB evaluates the value
            key = kwarg.this.name.lower()
            if key in params:
                raise InvalidArgument(f"ML.{node.function} names the argument {key!r} twice")
            value = exp.Select(expressions=[kwarg.expression.copy()])
            params[key] = fetch_arrow(cur, to_duckdb(value)).column(0)[0].as_py()
        call = DataCall(function=node.function, relations=relations, cursor=cur, params=params)
        return handler(self, call)


# Clauses that make a SELECT more than "all rows of one table".
_SELECT_CLAUSES = (
    "with_", "distinct", "into", "joins", "laterals", "pivots", "prewhere", "where", "group",
    "having", "qualify", "windows", "distribute", "sort", "cluster", "order", "limit", "offset",
    "locks", "sample", "exclude",
)  # fmt: skip


def _passthrough(tree: exp.Expression, registered: dict[str, pa.Table]) -> pa.Table | None:
    """The ML result itself when the statement is just ``SELECT * FROM ML.<fn>(…)``.

    DuckDB would copy every row back out to Arrow for nothing; 1M rows of 22 columns cost ~50 ms.
    """
    if not registered or not isinstance(tree, exp.Select):
        return None
    if len(tree.expressions) != 1 or not isinstance(tree.expressions[0], exp.Star):
        return None
    if any(tree.args.get(clause) for clause in _SELECT_CLAUSES):
        return None
    source = tree.args.get("from_")
    table = source.this if isinstance(source, exp.From) else None
    if not isinstance(table, exp.Table) or table.args.get("db") is not None:
        return None
    return registered.get(table.name)


def _ctes(tree: exp.Expression) -> dict[str, exp.CTE]:
    return {cte.alias_or_name.lower(): cte for cte in tree.find_all(exp.CTE)}


def _referenced_ctes(node: exp.Expression, ctes: dict[str, exp.CTE]) -> list[exp.CTE]:
    """The CTEs ``node`` reads, directly or through other CTEs, in definition order."""
    seen: dict[str, exp.CTE] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        for table in current.find_all(exp.Table):
            key = table.name.lower()
            if not table.args.get("db") and key in ctes and key not in seen:
                seen[key] = ctes[key]
                stack.append(ctes[key].this)
    order = list(ctes)
    return sorted(seen.values(), key=lambda c: order.index(c.alias_or_name.lower()))


def _blocked(
    node: exp.Expression, pending: Sequence[exp.Expression], ctes: dict[str, exp.CTE]
) -> bool:
    relations = (
        node.expressions if isinstance(node, MLDataFunction) else [node.args.get("expression")]
    )
    scopes = [
        scope
        for relation in relations
        if relation is not None
        for scope in (relation, *(c.this for c in _referenced_ctes(relation, ctes)))
    ]
    return any(other is not node and _inside(other, scope) for other in pending for scope in scopes)


def _inside(node: exp.Expr, scope: exp.Expr) -> bool:
    parent: exp.Expr | None = node
    while parent is not None:
        if parent is scope:
            return True
        parent = parent.parent
    return False


def _relation_query(relation: exp.Expression, ctes: dict[str, exp.CTE]) -> exp.Expr:
    """A standalone SELECT for an ML function's input, carrying the CTEs it reads."""
    query: exp.Expr
    if isinstance(relation, exp.Subquery):
        query = relation.this.copy()
    elif isinstance(relation, exp.Table):
        query = exp.Select(expressions=[exp.Star()]).from_(relation.copy(), copy=False)
    else:
        query = relation.copy()
    needed = _referenced_ctes(relation, ctes)
    if needed and isinstance(query, exp.Query):
        own = {c.alias_or_name.lower() for c in (query.args.get("with") or exp.With()).expressions}
        for cte in needed:
            if cte.alias_or_name.lower() not in own:
                query = query.with_(cte.alias_or_name, as_=cte.this.copy(), append=True)
    return query


def _statement_type(statement: exp.Expression) -> tuple[str, str | None]:
    """BigQuery's statement type, and the table a write names (for table versions)."""
    if isinstance(statement, exp.Create):
        kind = (statement.kind or "").upper()
        target = statement.this
        if isinstance(target, exp.Schema):
            target = target.this
        name = (
            table_name(target) if isinstance(target, exp.Table) and target.args.get("db") else None
        )
        if kind == "TABLE":
            return ("CREATE_TABLE_AS_SELECT" if statement.expression else "CREATE_TABLE"), name
        if kind == "VIEW":
            return "CREATE_VIEW", None
        if kind == "SCHEMA":
            return "CREATE_SCHEMA", None
        return f"CREATE_{kind}", None
    for cls, label in _WRITES.items():
        if isinstance(statement, cls):
            target = statement.this
            if isinstance(target, exp.Schema):
                target = target.this
            ok = isinstance(target, exp.Table) and target.args.get("db")
            return label, table_name(target) if ok else None
    if isinstance(statement, exp.Drop):
        return f"DROP_{(statement.kind or '').upper()}", None
    if isinstance(statement, exp.Query):
        return "SELECT", None
    return type(statement).__name__.upper(), None


def _describe(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 120 else text[:117] + "..."
