"""Small arrays derived from the ICT model once and shipped with nfs (nfs/resources/ict_derived.npz), so that the
first preparation in a fresh process does not spend a few hundred ms deriving them again: the alignment's principal
axes of the ICT regions, the face search's farthest-first order of its template samples, the ICT neck loop, and
the side of every ICT skin vertex at the mouth and at each eye. An array the file lacks is computed from the model
instead. tools/make_ict_derived.py computes them and writes the file; tests/test_ict_derived.py checks that every
shipped array equals a fresh computation."""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from nfs.resources import ICT_DERIVED_PATH

OPENING_SIDES_PREFIX = "opening_sides_"


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, np.ndarray]:
    try:
        with np.load(ICT_DERIVED_PATH, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError):          # not shipped (a partial checkout): everything is computed
        return {}


def derived(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The shipped array `name`, or `compute()` where the file lacks it. Read-only."""
    out = _shipped().get(name)
    out = np.asarray(compute()) if out is None else out
    out.setflags(write=False)
    return out


def derived_opening_sides(compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The shipped {opening name: (S,) int8 side} of the ICT skin, or `compute()` where the file has none."""
    shipped = {name[len(OPENING_SIDES_PREFIX):]: side for name, side in _shipped().items()
               if name.startswith(OPENING_SIDES_PREFIX)}
    out = shipped or compute()
    for side in out.values():
        side.setflags(write=False)
    return out
