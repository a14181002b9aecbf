"""Write nfs/resources/ict_derived.npz: the small arrays derived from the ICT model that nfs ships so that a first
preparation does not derive them (`nfs.ict_derived`). Rerun after changing how any of them is computed
(tests/test_ict_derived.py fails until then).

    python tools/make_ict_derived.py
"""
from __future__ import annotations

import numpy as np

from nfs.ict_derived import OPENING_SIDES_PREFIX
from nfs.resources import ICT_DERIVED_PATH


def fresh() -> dict[str, np.ndarray]:
    """Every shipped array computed from the ICT model, by name."""
    from nfs.mesh.align import region_axes
    from nfs.mesh.head import face_search_order, neck_loop_indices
    from nfs.prior.template import compute_ict_opening_sides
    out = {"face_search_order": face_search_order(), "neck_loop": neck_loop_indices(),
           "alignment_region_axes": region_axes()}
    out.update({OPENING_SIDES_PREFIX + name: side for name, side in compute_ict_opening_sides().items()})
    return out


def main() -> None:
    arrays = fresh()
    np.savez_compressed(ICT_DERIVED_PATH, **arrays)
    print(f"wrote {ICT_DERIVED_PATH}: " + ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
