"""Datasets of different formats and joint conventions in one job (issue 13)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotator.body.joints import COCO17_NAMES, MPII16_NAMES


def test_keypoints_of_mixed_conventions_in_one_batch():
    """A batch holding COCO (17 joints), MPII (16) and a null row: each row is read in its
    own convention (was: ValueError 'all input arrays must have the same shape')."""
    from annotator.data.batching import _keypoints

    coco = np.arange(17 * 3, dtype=np.float32)
    mpii = 1000 + np.arange(16 * 3, dtype=np.float32)
    batch = {"kp": np.array([coco, mpii, np.zeros(0, np.float32)], dtype=object),
             "conv": np.array(["coco17", "mpii16", "coco17"], dtype=object)}
    out, present = _keypoints(batch, "kp", "conv", 3)
    assert out.shape == (3, 17, 3)
    np.testing.assert_array_equal(out[0], coco.reshape(17, 3))
    assert present[0].all() and not present[2].any() and not out[2].any()
    for j, name in enumerate(COCO17_NAMES):
        if name in MPII16_NAMES:
            np.testing.assert_array_equal(out[1, j], mpii.reshape(16, 3)[MPII16_NAMES.index(name)])
            assert present[1, j]
        else:
            assert not present[1, j] and not out[1, j].any()


def test_dense_list_columns_removes_list_nulls():
    """Null list values (visibility of MPII/SPIN rows, joints_3d of COCO rows) become empty
    lists / NaN, which the batch code reads as 'absent' (Ray Data refused to concatenate a
    null-object block with a tensor block: 'Found columns with both objects and tensors')."""
    from annotator.data.batching import stack_list_column
    from annotator.steps.runtime import dense_list_columns

    t = pa.table({
        "visibility": pa.array([[2, 1], None], type=pa.list_(pa.int8())),
        "principal_point": pa.array([[1.0, 2.0], None], type=pa.list_(pa.float32(), 2)),
        "focal_length": pa.array([None, 3.0], type=pa.float32()),
    })
    d = dense_list_columns(t)
    assert d["visibility"].null_count == 0 and d["principal_point"].null_count == 0
    assert d["focal_length"].null_count == 1  # scalars keep their nulls
    assert d["visibility"].to_pylist() == [[2, 1], []]
    pp, valid = stack_list_column(np.stack(d["principal_point"].to_numpy(zero_copy_only=False)), 2)
    assert valid.tolist() == [True, False]
    vis, valid = stack_list_column(np.array([np.asarray(v) for v in d["visibility"].to_pylist()], dtype=object))
    assert valid.tolist() == [True, False]
