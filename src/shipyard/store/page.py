"""Page: one page of any list call (pure pydantic, so light clients can use it)."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list call; pass ``next_page_token`` back to get the next (None: the end)."""

    items: list[T]
    next_page_token: str | None = None
