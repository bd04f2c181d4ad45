"""Classification labels: the classes of a label column, and the codes a model sees.

:class:`LabelInfo` is fitted on the training label (its distinct values, ascending, with their
Arrow type), stored in the model package, and used by every prediction path to turn class
codes back into label values (and by evaluation to turn label values into codes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument
from shipyard.registry.statistics import one_array as _one_array

__all__ = ["MAX_LOGISTIC_CLASSES", "LabelInfo"]

#: BigQuery ML: a multiclass logistic regression label has at most 50 distinct values.
MAX_LOGISTIC_CLASSES = 50

# String labels of up to this many rows are decoded through NumPy objects, larger ones by take.
_SMALL_DECODE = 64

_LABEL_TYPES: dict[str, pa.DataType] = {
    str(t): t
    for t in (
        pa.bool_(),
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.large_string(),
    )
}


@dataclass(frozen=True)
class LabelInfo:
    """The classes of a classification label, in ascending order, with their Arrow type.

    Class ``k`` (0-based) is ``classes[k]``; for binary classification the positive class is
    the last one (``classes[1]``: ``1`` for 0/1, ``true`` for bools, the alphabetically
    greater string), the class whose probability ``threshold`` is compared with.
    """

    classes: pa.Array

    @classmethod
    def fit(
        cls,
        values: pa.ChunkedArray | pa.Array,
        *,
        label: str,
        max_classes: int | None = MAX_LOGISTIC_CLASSES,
    ) -> LabelInfo:
        """Learn the classes of a label column (NULLs ignored: those rows are not trained on)."""
        arr = _one_array(values)
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if str(arr.type) not in _LABEL_TYPES:
            raise InvalidArgument(
                f"label column {label!r} has type {arr.type}; a classification label must be "
                "a string, integer, bool or floating point column",
                column=label,
                type=str(arr.type),
            )
        uniques = pc.drop_null(pc.unique(arr))
        classes = uniques.take(pc.array_sort_indices(uniques))
        if len(classes) < 2:
            raise InvalidArgument(
                f"label column {label!r} has {len(classes)} distinct non-NULL value(s) "
                f"{classes.to_pylist()}; classification needs at least 2 classes",
                column=label,
                classes=classes.to_pylist(),
            )
        if max_classes is not None and len(classes) > max_classes:
            raise InvalidArgument(
                f"label column {label!r} has {len(classes)} distinct values; at most "
                f"{max_classes} classes are supported for this model type",
                column=label,
                class_count=len(classes),
            )
        return cls(classes)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def arrow_type(self) -> pa.DataType:
        return self.classes.type

    @property
    def positive_class(self) -> Any:
        """The positive class of a binary label (the greater one); None when multiclass."""
        return self.classes[1].as_py() if self.n_classes == 2 else None

    def values(self) -> list[Any]:
        return self.classes.to_pylist()  # type: ignore[no-any-return]

    def encode(self, values: pa.ChunkedArray | pa.Array, *, strict: bool = True) -> np.ndarray:
        """Class indices 0..K-1 (int64) of ``values``.

        NULLs and values the model never saw are -1, or raise InvalidArgument when ``strict``.
        """
        arr = _one_array(values)
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if not arr.type.equals(self.arrow_type):
            try:
                arr = arr.cast(self.arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidArgument(
                    f"label values of type {arr.type} cannot be compared with the model's "
                    f"classes of type {self.arrow_type}",
                    type=str(arr.type),
                    expected=str(self.arrow_type),
                ) from exc
        codes = pc.index_in(arr, value_set=self.classes)
        idx = codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if strict and (idx < 0).any():
            unknown = pc.drop_null(pc.unique(arr.filter(pc.is_null(codes)))).to_pylist()[:10]
            raise InvalidArgument(
                f"label values {unknown} are not classes of this model; classes: {self.values()}",
                unknown=unknown,
                classes=self.values(),
            )
        return idx

    def decode(self, codes: np.ndarray) -> pa.Array:
        """Original label values (the label's Arrow type) of class indices."""
        codes = np.asarray(codes)
        if self._codes_are_values and codes.dtype == np.int64:
            # INT64 classes 0..K-1 (a 0/1 label): each code is its class; no gather (300k
            # rows: ~0.25 ms). Arrow takes the codes' buffer without copying.
            return pa.array(codes, type=pa.int64())
        values = self._numpy_classes
        if values.dtype != object or len(codes) <= _SMALL_DECODE:
            # NumPy's gather: the same values without Arrow's per-call cost of ``take``.
            return pa.array(values[codes], type=self.arrow_type)
        return self.classes.take(pa.array(codes))

    @functools.cached_property
    def _codes_are_values(self) -> bool:
        """The classes are INT64 0, 1, …, K-1: class ``k`` is the value ``k``."""
        return pa.types.is_int64(self.arrow_type) and np.array_equal(
            self._numpy_classes, np.arange(self.n_classes)
        )

    @functools.cached_property
    def _numpy_classes(self) -> np.ndarray:
        """The classes as NumPy: numbers and bools as themselves, strings as objects."""
        return self.classes.to_numpy(zero_copy_only=False)

    def to_dict(self) -> dict[str, Any]:
        return {"arrow_type": str(self.arrow_type), "classes": self.values()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelInfo:
        type_name = data.get("arrow_type")
        if type_name not in _LABEL_TYPES:
            raise InvalidArgument(
                f"label arrow_type {type_name!r} is not supported; "
                f"valid: {', '.join(_LABEL_TYPES)}",
                arrow_type=type_name,
            )
        return cls(pa.array(data["classes"], type=_LABEL_TYPES[type_name]))
