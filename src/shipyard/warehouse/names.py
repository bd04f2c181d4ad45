"""BigQuery names for warehouse objects.

A BigQuery dataset is a DuckDB schema: ``dataset.table`` is ``"dataset"."table"`` in DuckDB, and
``project.dataset.table`` resolves to the same table (Shipyard serves one project per workspace).
Models share the namespace: ``dataset.model``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.errors import InvalidArgument

_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def quote_identifier(name: str) -> str:
    """``name`` as a quoted DuckDB identifier, whatever characters it holds (a double quote
    inside is doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a DuckDB string literal (a single quote inside is doubled)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, order=True)
class QualifiedName:
    """``dataset.name``: the one identity of a table or a model on every face."""

    dataset: str
    name: str

    @classmethod
    def parse(cls, text: str, *, kind: str = "table") -> QualifiedName:
        """Parse ``dataset.name`` or ``project.dataset.name`` (backticks allowed).

        >>> QualifiedName.parse("my-project.demo.t")
        QualifiedName(dataset='demo', name='t')
        """
        if not isinstance(text, str):
            raise InvalidArgument(f"{kind} name must be a string, got {type(text).__name__}")
        parts = [p.strip("`") for p in text.strip().strip("`").split(".")]
        if len(parts) == 3:
            parts = parts[1:]
        if len(parts) != 2 or not all(_PART.match(p) for p in parts):
            raise InvalidArgument(
                f"invalid {kind} name {text!r}: expected 'dataset.{kind}' "
                f"(letters, digits, '_' and '-'; a 'project.' prefix is allowed)"
            )
        return cls(parts[0].lower(), parts[1].lower())

    def __str__(self) -> str:
        return f"{self.dataset}.{self.name}"

    @property
    def sql(self) -> str:
        """The DuckDB identifier, quoted."""
        return f'"{self.dataset}"."{self.name}"'
