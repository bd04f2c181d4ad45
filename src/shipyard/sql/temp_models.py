"""``CREATE TEMP MODEL m …``: a model that lives for one multi-statement script.

As BigQuery's temporary tables, a TEMP model needs a script (a single statement is refused: the
model would be gone before it could be used) and has no dataset in its name. Shipyard registers
it under a dataset private to the script's job (``_temp_<job id>.m``), resolves the bare name
``m`` to it in the script's later statements (``ML.*(MODEL m …)``, ``DROP MODEL m``,
``ALTER MODEL m``, ``EXPORT MODEL m``), and drops it when the script ends, whether it succeeded
or failed. While the script runs the model is listed under that dataset.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlglot import exp

from shipyard.errors import InvalidArgument
from shipyard.sql.dialect import AlterModel, ExportModel, MLFunction

if TYPE_CHECKING:
    from shipyard.registry.service import ModelService

__all__ = ["TempModels", "is_temp_create"]


def is_temp_create(statement: exp.Expression) -> bool:
    if not (isinstance(statement, exp.Create) and (statement.kind or "").upper() == "MODEL"):
        return False
    properties = statement.args.get("properties")
    return any(
        isinstance(p, exp.TemporaryProperty) for p in (properties.expressions if properties else [])
    )


class TempModels:
    """The TEMP models of one script: name resolution, then cleanup."""

    def __init__(self, job_id: str, statements: int) -> None:
        self.dataset = "_temp_" + re.sub(r"[^A-Za-z0-9_]", "_", job_id)
        self.script = statements > 1
        self.names: dict[str, str] = {}  # bare name (lower-case) → dataset.name

    def rewrite(self, statement: exp.Expression) -> exp.Expression:
        """``statement`` with TEMP model names resolved (a copy when anything changed)."""
        if is_temp_create(statement):
            return self._create(statement)
        if not self.names:
            return statement
        tree = statement.copy()
        for table in self._model_refs(tree):
            hidden = self.names.get(table.name.lower())
            if hidden is not None and table.args.get("db") is None:
                table.replace(exp.to_table(hidden))
        return tree

    def _create(self, statement: exp.Expression) -> exp.Expression:
        if not self.script:
            raise InvalidArgument(
                "CREATE TEMP MODEL needs a multi-statement script: a TEMP model is dropped when "
                "its script ends, so use it in the same script (… ; SELECT * FROM "
                "ML.PREDICT(MODEL m, …))"
            )
        tree = statement.copy()
        target = tree.this
        if not isinstance(target, exp.Table) or target.args.get("db") is not None:
            raise InvalidArgument(
                f"a TEMP model's name has no dataset: CREATE TEMP MODEL {target.name} …, not "
                f"{target.sql()}"
            )
        name = target.name
        hidden = f"{self.dataset}.{name}"
        self.names[name.lower()] = hidden
        properties = tree.args["properties"]
        properties.set(
            "expressions",
            [p for p in properties.expressions if not isinstance(p, exp.TemporaryProperty)],
        )
        target.replace(exp.to_table(hidden))
        return tree

    @staticmethod
    def _model_refs(tree: exp.Expression) -> list[exp.Table]:
        refs: list[exp.Table] = []
        for node in tree.find_all(exp.Predict, MLFunction):
            if isinstance(node.this, exp.Table):
                refs.append(node.this)
        if isinstance(tree, exp.Drop) and (tree.kind or "").upper() == "MODEL":
            refs.extend(
                t for t in tree.args.get("tables") or [tree.this] if isinstance(t, exp.Table)
            )
        if isinstance(tree, AlterModel | ExportModel) and isinstance(tree.this, exp.Table):
            refs.append(tree.this)
        return refs

    def drop(self, models: ModelService) -> list[str]:
        """Drop every TEMP model of the script that still exists; returns their names."""
        dropped = []
        for hidden in self.names.values():
            if models.exists(hidden):
                models.delete(hidden)
                dropped.append(hidden)
        return dropped
