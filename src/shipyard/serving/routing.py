"""Traffic routing: which deployment answers a request.

The split is a list of (deployment, percent) in a fixed order, turned once into cumulative
bounds on [0, 100). A request without a key draws uniformly; a request with a sticky key hashes
it (BLAKE2b, stable across processes and restarts, unlike Python's ``hash``) to a point on the
same line, so a key reaches the same deployment for as long as the split is unchanged. When the
split changes, only keys whose point falls in a moved range change deployment.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping

__all__ = ["Router", "key_point"]

_RESOLUTION = 1_000_000  # points per 100 %: finer than any whole-percent split needs


def key_point(key: object) -> float:
    """The key's stable position in [0, 100)."""
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % _RESOLUTION) * 100.0 / _RESOLUTION


class Router:
    """Picks a deployment id for a request from a whole-percent traffic split."""

    def __init__(self, traffic: Mapping[str, int], *, rng: random.Random | None = None) -> None:
        # Sorted ids: the same split always lays out the same ranges, whatever the dict order.
        self._ids = [d for d in sorted(traffic) if traffic[d] > 0]
        bounds: list[float] = []
        total = 0
        for deployment_id in self._ids:
            total += traffic[deployment_id]
            bounds.append(float(total))
        self._bounds = bounds
        self._rng = rng or random.Random()

    @property
    def empty(self) -> bool:
        return not self._ids

    def pick(self, key: object = None) -> str:
        """The deployment for a request; ``key`` (not None) routes stickily."""
        if not self._ids:
            raise LookupError("no deployment receives traffic")
        if len(self._ids) == 1:
            return self._ids[0]
        point = key_point(key) if key is not None else self._rng.random() * 100.0
        index = bisect.bisect_right(self._bounds, point)
        return self._ids[min(index, len(self._ids) - 1)]
