"""The read planner alone: schemas and options in, a ReadPlan out (no dask, no Intake, no I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from intake_cpg.errors import ParameterError
from intake_cpg.layout import parse_key
from intake_cpg.planner import ReadOptions, plan_read
from intake_cpg.readers import STRING_DTYPE, FileSchema

KEY = "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet"
PATH = parse_key(KEY)
F32 = np.dtype("float32")


def _schema(cols: dict, rows: int | None = 384, **kw) -> FileSchema:
    return FileSchema(KEY, cols, num_rows=rows, **kw)


def test_path_columns_first_when_the_table_lacks_them():
    s = _schema({"Metadata_Well": STRING_DTYPE, "Cells_Area": F32})
    planned = plan_read([s], PATH, 1, ReadOptions())
    assert list(planned.meta.columns) == [
        "Metadata_Source",
        "Metadata_Batch",
        "Metadata_Plate",
        "Metadata_Well",
        "Cells_Area",
    ]
    assert planned.plan.path_columns == ("Metadata_Source", "Metadata_Batch", "Metadata_Plate")
    assert planned.plan.expected == ("Metadata_Well", "Cells_Area")
    assert planned.meta["Metadata_Plate"].dtype == STRING_DTYPE
    assert planned.num_rows == 384


def test_no_path_columns_outside_the_layout_or_when_off():
    s = _schema({"Cells_Area": F32})
    assert list(plan_read([s], None, 1, ReadOptions()).meta.columns) == ["Cells_Area"]
    off = plan_read([s], PATH, 1, ReadOptions(path_metadata=False))
    assert list(off.meta.columns) == ["Cells_Area"] and off.plan.path_columns == ()


def test_union_and_intersection_of_schemas():
    a = _schema({"x": F32, "y": F32})
    b = _schema({"x": np.dtype("float64"), "z": F32})
    union = plan_read([a, b], None, 2, ReadOptions(schema="union"))
    assert dict(union.meta.dtypes) == {"x": np.dtype("float64"), "y": F32, "z": F32}
    assert union.num_rows == 768
    inter = plan_read([a, b], None, 2, ReadOptions(schema="intersection"))
    assert list(inter.meta.columns) == ["x"]


def test_row_count_unknown_with_filters_or_unread_footers():
    s = _schema({"Metadata_Well": STRING_DTYPE})
    assert plan_read([s], None, 3, ReadOptions()).num_rows is None  # 2 footers not read
    f = ReadOptions(filters=[("Metadata_Well", "==", "A01")])
    assert plan_read([s], None, 1, f).num_rows is None


def test_columns_index_and_projection():
    s = _schema({"Metadata_Well": STRING_DTYPE, "a": F32, "b": F32})
    planned = plan_read([s], PATH, 1, ReadOptions(columns=("b",), index="Metadata_Well"))
    assert planned.meta.index.name == "Metadata_Well" and list(planned.meta.columns) == ["b"]
    assert planned.plan.expected == ("Metadata_Well", "b")
    assert planned.plan.check_extra is False
    assert planned.plan.path_columns == ()


def test_embedding_expansion_and_its_errors():
    s = _schema(
        {"well": STRING_DTYPE, "emb": np.dtype(object)},
        list_widths={"emb": 3},
        list_dtypes={"emb": F32},
    )
    planned = plan_read([s], None, 1, ReadOptions(expand_embeddings=True, columns=("emb",)))
    assert list(planned.meta.columns) == ["emb_0", "emb_1", "emb_2"]
    assert planned.origins == {"emb_0": "emb", "emb_1": "emb", "emb_2": "emb"}
    assert planned.plan.list_widths == {"emb": 3}
    empty = _schema({"emb": np.dtype(object)}, list_widths={"emb": None})
    with pytest.raises(ParameterError, match="expand_embeddings=False"):
        plan_read([empty], None, 1, ReadOptions(expand_embeddings=True))


@pytest.mark.parametrize(
    "opts",
    [
        ReadOptions(columns=("Cells_Aera",)),
        ReadOptions(index="nope"),
        ReadOptions(filters=[("nope", "==", 1)]),
    ],
)
def test_unknown_columns_are_named_with_close_matches(opts):
    s = _schema({"Cells_Area": F32})
    with pytest.raises(ParameterError, match="not in"):
        plan_read([s], None, 1, opts)
