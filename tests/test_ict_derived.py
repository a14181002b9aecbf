"""The ICT data nfs ships instead of deriving it on first use (nfs/resources/ict_derived.npz): every shipped array
equals a fresh computation from the ICT model (rerun tools/make_ict_derived.py when one does not), the users get
the shipped ones, and an array the file lacks is computed."""
import importlib.util

import numpy as np

from nfs import REPO_ROOT, ict_derived
from nfs.resources import ICT_DERIVED_PATH


def _maker():
    spec = importlib.util.spec_from_file_location("make_ict_derived", REPO_ROOT / "tools" / "make_ict_derived.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_arrays_equal_a_fresh_computation():
    with np.load(ICT_DERIVED_PATH, allow_pickle=False) as data:
        shipped = {name: data[name] for name in data.files}
    fresh = _maker().fresh()
    assert sorted(shipped) == sorted(fresh)
    assert {"alignment_region_axes", "face_search_order", "neck_loop", "opening_sides_mouth", "opening_sides_eye_L",
            "opening_sides_eye_R"} <= set(shipped)
    for name, array in fresh.items():
        assert shipped[name].dtype == array.dtype, name
        np.testing.assert_array_equal(shipped[name], array, err_msg=f"{name}: rerun tools/make_ict_derived.py")
    # the arrays mean what they say: both sides of every opening, the neck at the bottom of the skin
    for name in ("mouth", "eye_L", "eye_R"):
        assert set(np.unique(shipped["opening_sides_" + name])) == {-1, 0, 1}
    assert len(np.unique(shipped["face_search_order"])) == len(shipped["face_search_order"])
    from nfs.prior.face_fit import skin_template
    mean = skin_template()[0]
    assert mean[shipped["neck_loop"], 1].mean() < mean[:, 1].min() + 0.2 * np.ptp(mean[:, 1])


def test_users_get_the_shipped_arrays():
    from nfs.mesh.head import _face_template, _face_samples
    from nfs.prior.template import ict_opening_sides
    with np.load(ICT_DERIVED_PATH, allow_pickle=False) as data:
        np.testing.assert_array_equal(_face_template().points, _face_samples()[0][data["face_search_order"]])
        for name, side in ict_opening_sides().items():
            np.testing.assert_array_equal(side, data["opening_sides_" + name])
            assert not side.flags.writeable


def test_an_array_the_file_lacks_is_computed():
    calls = []

    def compute():
        calls.append(1)
        return np.arange(3)

    out = ict_derived.derived("not_shipped", compute)
    assert calls and list(out) == [0, 1, 2] and not out.flags.writeable
    assert ict_derived.derived("neck_loop", compute) is not None and len(calls) == 1
