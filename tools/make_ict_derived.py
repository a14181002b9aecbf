"""Write nfs/resources/ict_derived.npz: the small arrays derived from the ICT model that nfs ships so that a first
preparation does not derive them (`nfs.ict_derived`). Rerun after changing how any of them is computed
(tests/test_ict_derived.py fails until then).

    python tools/make_ict_derived.py
"""
from __future__ import annotations

import numpy as np

from nfs.ict_derived import fresh
from nfs.resources import ICT_DERIVED_PATH


def main() -> None:
    arrays = fresh()
    np.savez_compressed(ICT_DERIVED_PATH, **arrays)
    print(f"wrote {ICT_DERIVED_PATH}: " + ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
