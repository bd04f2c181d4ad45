"""The BigQuery ML dialect: sqlglot's BigQuery dialect, extended by subclassing.

Stock sqlglot parses ``CREATE MODEL`` and ``ML.PREDICT``; the other ``ML.*`` table functions are
added here as one data-driven entry each (``ML_TABLE_FUNCTIONS``), parsed into :class:`MLFunction`
with the same shape as ``exp.Predict``: ``this`` (the model), ``expression`` (the input relation:
a table or a subquery, optional) and ``params_struct`` (the trailing ``STRUCT(...)``, optional).
"""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.bigquery import BigQuery
from sqlglot.errors import ParseError, TokenError
from sqlglot.helper import seq_get
from sqlglot.tokens import TokenType

from shipyard.errors import SQLError

# Every ML.* table function of BigQuery ML besides PREDICT (which stock sqlglot parses).
ML_TABLE_FUNCTIONS = (
    "ADVANCED_WEIGHTS",
    "ARIMA_COEFFICIENTS",
    "ARIMA_EVALUATE",
    "CENTROIDS",
    "CONFUSION_MATRIX",
    "DETECT_ANOMALIES",
    "EVALUATE",
    "EXPLAIN_FORECAST",
    "EXPLAIN_PREDICT",
    "FEATURE_IMPORTANCE",
    "FEATURE_INFO",
    "FORECAST",  # stock sqlglot parses it into MLForecast; ours gives the MLFunction shape
    "GET_INSIGHTS",  # CONTRIBUTION_ANALYSIS models (shipyard.sql.contribution_analysis)
    "GLOBAL_EXPLAIN",
    "HOLIDAY_INFO",
    "PRINCIPAL_COMPONENTS",
    "PRINCIPAL_COMPONENT_INFO",
    "RECOMMEND",
    "RECONSTRUCTION_LOSS",
    "ROC_CURVE",
    "TRAINING_INFO",
    "TRANSFORM",
    "TRIAL_INFO",
    "VALIDATE_DATA_SKEW",
    "WEIGHTS",
)

# BigQuery ML's functions over remote models (a Vertex AI endpoint, an LLM, a Cloud AI API):
# they parse like the others, so that running one says why it cannot run here (Unsupported).
ML_REMOTE_MODEL_FUNCTIONS = (
    "ANNOTATE_IMAGE",
    "GENERATE_EMBEDDING",
    "GENERATE_TABLE",
    "GENERATE_TEXT",
    "PROCESS_DOCUMENT",
    "TRANSCRIBE",
    "TRANSLATE",
    "UNDERSTAND_TEXT",
)

# The ML.* table functions over data, with no MODEL: one or two relations, then a STRUCT.
ML_DATA_FUNCTIONS = (
    "DESCRIBE_DATA",  # ML.DESCRIBE_DATA(TABLE t, STRUCT(…))
    "ENTITY_FEATURES_AT_TIME",  # (TABLE features, TABLE entity_times, num_rows => 2)
    "FEATURES_AT_TIME",  # ML.FEATURES_AT_TIME(TABLE features, time => TIMESTAMP '…')
    "TFDV_DESCRIBE",
    "VALIDATE_DATA_DRIFT",  # ML.VALIDATE_DATA_DRIFT(TABLE base, TABLE study, STRUCT(…))
)


class MLFunction(exp.Expression, exp.Func):
    """``ML.<name>(MODEL m [, TABLE t | (query)] [, STRUCT(...)])``."""

    arg_types = {
        "this": True,
        "expression": False,
        "params_struct": False,
        "name": True,
        "struct_first": False,  # ML.DETECT_ANOMALIES(MODEL m, STRUCT(…), TABLE t)
    }

    @property
    def function(self) -> str:
        return self.args["name"].name


class MLDataFunction(exp.Expression, exp.Func):
    """``ML.<name>({TABLE t | (query)}[, {TABLE t | (query)}] [, STRUCT(...) | , name => value
    …])``: a table function over data alone (``ML_DATA_FUNCTIONS``). ``expressions``: the
    relations, in the order written; ``named``: the ``name => value`` arguments (``exp.Kwarg``),
    the form the feature-lookup functions take instead of a STRUCT."""

    arg_types = {"expressions": True, "params_struct": False, "named": False, "name": True}

    @property
    def function(self) -> str:
        return self.args["name"].name


def _is_ml_call(self: Any) -> bool:
    """Whether the function being parsed is spelt ``ML.<name>(``: a user function that happens
    to share the name is not ours."""
    token = seq_get(self._tokens, self._index - 4)
    return bool(token and token.text.upper() == "ML")


def _anonymous(self: Any, name: str) -> exp.Expression:
    return self.expression(  # type: ignore[no-any-return]
        exp.Anonymous(this=name, expressions=self._parse_csv(self._parse_lambda))
    )


def _ml_data_function_parser(name: str) -> Any:
    def parse(self: ShipyardBigQuery.Parser) -> exp.Expression:
        if not _is_ml_call(self):
            return _anonymous(self, name)
        relations: list[exp.Expression] = []
        named: list[exp.Expression] = []
        params = None
        while True:
            if self._match(TokenType.STRUCT, advance=False):
                params = self._parse_bitwise()
                break
            if self._next is not None and self._next.token_type == TokenType.FARROW:
                named.append(self._parse_lambda())  # name => value
            else:
                self._match_text_seq("TABLE")
                relation = self._parse_table()
                if relation is None:
                    self.raise_error(f"ML.{name} expects TABLE dataset.table or (SELECT …)")
                relations.append(relation)
            if not self._match(TokenType.COMMA):
                break
        return self.expression(
            MLDataFunction(
                expressions=relations,
                params_struct=params,
                named=named or None,
                name=exp.var(name),
            )
        )

    return parse


def _ml_function_parser(name: str) -> Any:
    def parse(self: ShipyardBigQuery.Parser) -> exp.Expression:
        if not _is_ml_call(self):
            return _anonymous(self, name)
        self._match_text_seq("MODEL")
        model = self._parse_table_parts()
        relation = params = struct_first = None
        if self._match(TokenType.COMMA):
            if self._match(TokenType.STRUCT, advance=False):
                params = self._parse_bitwise()
                if self._match(TokenType.COMMA):
                    struct_first = exp.true()
                    self._match_text_seq("TABLE")
                    relation = self._parse_table()
            else:
                self._match_text_seq("TABLE")
                relation = self._parse_table()
                if self._match(TokenType.COMMA):
                    params = self._parse_bitwise()
        return self.expression(
            MLFunction(
                this=model,
                expression=relation,
                params_struct=params,
                name=exp.var(name),
                struct_first=struct_first,
            )
        )

    return parse


def _ml_function_sql(self: Any, e: MLFunction) -> str:
    args = []
    if e.expression is not None:
        relation = self.sql(e, "expression")
        args.append(relation if isinstance(e.expression, exp.Subquery) else f"TABLE {relation}")
    if e.args.get("params_struct") is not None:
        struct = self.sql(e, "params_struct")
        args.insert(0, struct) if e.args.get("struct_first") else args.append(struct)
    args.insert(0, f"MODEL {self.sql(e, 'this')}")
    return f"{e.function}({', '.join(args)})"


def _ml_data_function_sql(self: Any, e: MLDataFunction) -> str:
    args = [
        self.sql(r) if isinstance(r, exp.Subquery) else f"TABLE {self.sql(r)}"
        for r in e.expressions
    ]
    if e.args.get("params_struct") is not None:
        args.append(self.sql(e, "params_struct"))
    args.extend(self.sql(kwarg) for kwarg in e.args.get("named") or [])
    return f"{e.function}({', '.join(args)})"


class AlterModel(exp.Expression):
    """``ALTER MODEL [IF EXISTS] m SET OPTIONS(key=value, …)`` (stock sqlglot: a Command)."""

    arg_types = {"this": True, "exists": False, "options": True}


class ExportModel(exp.Expression):
    """``EXPORT MODEL m [OPTIONS(uri=…, …)]`` (stock sqlglot parses only EXPORT DATA)."""

    arg_types = {"this": True, "options": False}


def _parse_alter_model(self: Any) -> exp.Expression:
    if not self._match_text_seq("MODEL"):
        return BigQuery.Parser._parse_alter(self)  # type: ignore[no-any-return]
    exists = self._parse_exists()
    model = self._parse_table_parts()
    if not self._match_text_seq("SET", "OPTIONS"):
        self.raise_error("Expected SET OPTIONS(key=value, …) after ALTER MODEL <name>")
    options = exp.Properties(expressions=self._parse_wrapped_properties())
    return self.expression(AlterModel(this=model, exists=exists, options=options))


def _parse_export(self: Any) -> exp.Expression:
    if not self._match_text_seq("MODEL"):
        return self._parse_export_data()  # type: ignore[no-any-return]
    model = self._parse_table_parts()
    options = None
    if self._match_text_seq("OPTIONS"):
        options = exp.Properties(expressions=self._parse_wrapped_properties())
    return self.expression(ExportModel(this=model, options=options))


def _options_sql(self: Any, e: exp.Expression) -> str:
    options = e.args.get("options")
    return f"OPTIONS ({self.expressions(options, flat=True)})" if options is not None else ""


def _alter_model_sql(self: Any, e: AlterModel) -> str:
    exists = " IF EXISTS" if e.args.get("exists") else ""
    return f"ALTER MODEL{exists} {self.sql(e, 'this')} SET {_options_sql(self, e)}"


def _export_model_sql(self: Any, e: ExportModel) -> str:
    options = _options_sql(self, e)
    return f"EXPORT MODEL {self.sql(e, 'this')}" + (f" {options}" if options else "")


#: ``CREATE MODEL … AS (training_data AS (…), custom_holiday AS (…))``: the named queries.
TRAINING_QUERY_NAMES = ("training_data", "custom_holiday")


class TrainingQueries(exp.Expression):
    """``AS (training_data AS (query) [, custom_holiday AS (query)])`` of CREATE MODEL (ARIMA_PLUS
    custom holidays; stock sqlglot expects a single query). Read it with :meth:`query`."""

    arg_types = {"training_data": True, "custom_holiday": False}

    def query(self, name: str) -> exp.Expression | None:
        return self.args.get(name)  # type: ignore[no-any-return]


def _parse_training_queries(self: Any) -> exp.Expression:
    queries: dict[str, exp.Expression] = {}
    self._match(TokenType.L_PAREN)
    while True:
        if not self._match_texts(tuple(n.upper() for n in TRAINING_QUERY_NAMES)):
            self.raise_error(
                "Expected training_data AS (query) or custom_holiday AS (query) in CREATE MODEL "
                "… AS (…)"
            )
        name = self._prev.text.lower()
        if name in queries:
            self.raise_error(f"{name} is given twice in CREATE MODEL … AS (…)")
        if not (self._match(TokenType.ALIAS) and self._match(TokenType.L_PAREN)):
            self.raise_error(f"Expected {name} AS (query)")
        queries[name] = self._parse_ddl_select()
        self._match_r_paren()
        if not self._match(TokenType.COMMA):
            break
    self._match_r_paren()
    if "training_data" not in queries:
        self.raise_error("CREATE MODEL … AS (…) needs training_data AS (query)")
    return self.expression(TrainingQueries(**queries))


def _training_queries_sql(self: Any, e: TrainingQueries) -> str:
    parts = [
        f"{name} AS ({self.sql(e, name)})" for name in TRAINING_QUERY_NAMES if e.args.get(name)
    ]
    return f"({', '.join(parts)})"


class ShipyardBigQuery(BigQuery):
    """BigQuery's SQL plus every ML.* table function, ALTER MODEL and EXPORT MODEL."""

    class Parser(BigQuery.Parser):  # type: ignore[misc,valid-type]
        FUNCTION_PARSERS = {
            **BigQuery.Parser.FUNCTION_PARSERS,
            **{name: _ml_function_parser(name) for name in ML_TABLE_FUNCTIONS},
            **{name: _ml_function_parser(name) for name in ML_REMOTE_MODEL_FUNCTIONS},
            **{name: _ml_data_function_parser(name) for name in ML_DATA_FUNCTIONS},
        }
        STATEMENT_PARSERS = {
            **BigQuery.Parser.STATEMENT_PARSERS,
            TokenType.ALTER: _parse_alter_model,
            TokenType.EXPORT: _parse_export,
        }

        def _parse_ddl_select(self) -> exp.Expr | None:
            # CREATE MODEL … AS (training_data AS (…), custom_holiday AS (…))
            ahead = self._tokens[self._index : self._index + 3]
            if (
                len(ahead) == 3
                and ahead[0].token_type == TokenType.L_PAREN
                and ahead[1].text.lower() in TRAINING_QUERY_NAMES
                and ahead[2].token_type == TokenType.ALIAS
            ):
                return _parse_training_queries(self)  # type: ignore[no-any-return]
            return super()._parse_ddl_select()  # type: ignore[no-any-return]

    class Generator(BigQuery.Generator):  # type: ignore[misc,valid-type]
        TRANSFORMS = {
            **BigQuery.Generator.TRANSFORMS,
            MLFunction: _ml_function_sql,
            MLDataFunction: _ml_data_function_sql,
            AlterModel: _alter_model_sql,
            ExportModel: _export_model_sql,
            TrainingQueries: _training_queries_sql,
        }


def parse(sql: str) -> list[exp.Expression]:
    """Parse a script of one or more statements; errors carry line, column and highlight."""
    if not isinstance(sql, str) or not sql.strip():
        raise SQLError("empty statement: expected SQL text")
    try:
        statements = sqlglot.parse(sql, read=ShipyardBigQuery)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise SQLError(
            f"syntax error: {first.get('description') or exc}",
            line=first.get("line"),
            column=first.get("col"),
            highlight=first.get("highlight"),
            sql=sql,
        ) from None
    except TokenError as exc:
        raise SQLError(f"syntax error: {exc}", sql=sql) from None
    out = [s for s in statements if isinstance(s, exp.Expression)]
    if not out:
        raise SQLError("empty statement: expected SQL text")
    return out


def _one_based_subscripts(tree: exp.Expr) -> None:
    """``arr[OFFSET(i)]`` (and a bare ``arr[i]``) counts from 0 in BigQuery, from 1 in DuckDB.

    sqlglot shifts a literal index but leaves an expression as it is (``arr[OFFSET(MOD(i, 3))]``
    would read the wrong element, and ``OFFSET(0)`` NULL); here such an index becomes
    ``(i) + 1``, marked as already one-based.
    """
    for bracket in list(tree.find_all(exp.Bracket)):
        if bracket.args.get("offset") != 0 or len(bracket.expressions) != 1:
            continue
        index = bracket.expressions[0]
        if isinstance(index, exp.Literal) or (
            isinstance(index, exp.Neg) and isinstance(index.this, exp.Literal)
        ):
            continue  # sqlglot shifts literals itself (a string key is a map or JSON lookup)
        base = index.copy() if isinstance(index, exp.Column) else exp.paren(index.copy())
        index.replace(exp.Add(this=base, expression=exp.Literal.number(1)))
        bracket.set("offset", 1)


def to_duckdb(expression: exp.Expr) -> str:
    """DuckDB SQL for a statement whose ML functions were already replaced.

    BigQuery's ``project.dataset.table`` becomes ``dataset.table``: the workspace is the project.
    """
    tree = expression.copy()
    for table in tree.find_all(exp.Table):
        if table.args.get("catalog") is not None:
            table.set("catalog", None)
    _one_based_subscripts(tree)
    # ML.BUCKETIZE(…), ML.MIN_MAX_SCALER(…) OVER () …: DuckDB expressions (a lazy import: that
    # module reads this one's literal helpers)
    from shipyard.sql.preprocessing_functions import rewrite_plain_query

    rewriter = rewrite_plain_query(tree)
    sql = tree.sql(dialect="duckdb")
    return rewriter.render_sql(sql) if rewriter is not None else sql


def statement_model_type(statement: exp.Create) -> str | None:
    """The upper-cased ``model_type`` a CREATE MODEL's OPTIONS name, or None without one."""
    properties = statement.args.get("properties")
    for prop in properties.expressions if properties else []:
        if type(prop) is exp.Property and prop.name.lower() == "model_type":
            value = literal_value(prop.args["value"])
            return value.upper() if isinstance(value, str) else None
    return None


def literal_value(node: exp.Expression) -> Any:
    """The Python value of an OPTIONS/STRUCT literal: strings, numbers, booleans, arrays, NULL."""
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text)
        except ValueError:
            return float(text)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Neg):
        value = literal_value(node.this)
        if isinstance(value, int | float):
            return -value
    if isinstance(node, exp.Array):
        return [literal_value(e) for e in node.expressions]
    if isinstance(node, exp.Paren):
        return literal_value(node.this)
    if isinstance(node, exp.Tuple):
        return [literal_value(e) for e in node.expressions]
    if isinstance(node, exp.Struct):
        return struct_values(node)
    if isinstance(node, exp.Column | exp.Var | exp.Identifier):
        return node.name  # bare words such as OPTIONS(model_type=linear_reg)
    raise SQLError(f"expected a literal value, got {node.sql(dialect=ShipyardBigQuery)!r}")


def struct_values(node: exp.Expression | None) -> dict[str, Any]:
    """``STRUCT(0.5 AS threshold, …)`` → ``{"threshold": 0.5, …}`` (names lower-cased)."""
    if node is None:
        return {}
    if isinstance(node, exp.GenerateSeries):  # ML.ROC_CURVE(MODEL m, TABLE t, GENERATE_ARRAY(…))
        bounds = [node.args.get(k) for k in ("start", "end", "step")]
        return {"generate_array": [None if b is None else literal_value(b) for b in bounds]}
    if not isinstance(node, exp.Struct):
        raise SQLError(
            f"expected STRUCT(value AS name, …), got {node.sql(dialect=ShipyardBigQuery)!r}"
        )
    out: dict[str, Any] = {}
    for item in node.expressions:
        if isinstance(item, exp.PropertyEQ | exp.Alias):
            key = item.alias if isinstance(item, exp.Alias) else item.this.name
            value = item.this if isinstance(item, exp.Alias) else item.expression
            out[key.lower()] = literal_value(value)
        else:
            raise SQLError(
                f"STRUCT fields need names (value AS name): {item.sql(dialect=ShipyardBigQuery)!r}"
            )
    return out


def table_name(node: exp.Expression) -> str:
    """``dataset.name`` of a table/model reference (a project prefix dropped)."""
    if not isinstance(node, exp.Table):
        raise SQLError(
            f"expected a table or model name, got {node.sql(dialect=ShipyardBigQuery)!r}"
        )
    parts = [p for p in (node.args.get("db"), node.this) if p is not None]
    return ".".join(p.name for p in parts)
