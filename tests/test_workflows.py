"""The JUMP workflows end to end on the demo: TARGET2 plates annotated, then pycytominer and copairs.

The values the pycytominer and copairs steps give are checked against the same quantities
computed here independently with numpy/pandas (not against numbers written down).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from intake_cpg.annotate import annotate_frame, prepare
from intake_cpg.metadata import USUAL_TABLES
from intake_cpg.metadata.source import open_store

FEATURES = 5


@pytest.fixture(scope="module")
def demo(demo_jump):
    return demo_jump


@pytest.fixture(scope="module")
def store(demo):
    return open_store(demo.metadata_root, metadata_release=demo.metadata_release)


@pytest.fixture(scope="module")
def target2(demo, store):
    """Two TARGET2 plates per source with five features, annotated, by hand with pandas."""
    plate = store.read("plate")
    on_disk = demo.plates[(demo.plates.project == "cpg0016-jump") & demo.plates.variant.isna()]
    sel = plate[plate.Metadata_PlateType == "TARGET2"].merge(
        on_disk.rename(columns={"source": "Metadata_Source", "plate": "Metadata_Plate"}),
        on=["Metadata_Source", "Metadata_Plate"],
    )
    sel = sel.sort_values(["Metadata_Source", "Metadata_Plate"]).groupby("Metadata_Source").head(2)
    assert sel.Metadata_Source.value_counts().le(2).all() and len(sel) >= 3
    frames = [pd.read_parquet(demo.url(k)) for k in sel.key]
    feats = [c for c in frames[0].columns if not c.startswith("Metadata_")][:FEATURES]
    df = pd.concat(
        [f[["Metadata_Source", "Metadata_Plate", "Metadata_Well", *feats]] for f in frames]
    )
    return annotate_frame(df.reset_index(drop=True), prepare(store.read_many(USUAL_TABLES))), feats


def test_pycytominer_normalize_equals_robust_mad_by_hand(target2):
    from pycytominer import normalize

    df, feats = target2
    meta = [c for c in df.columns if c.startswith("Metadata_")]
    got = normalize(
        df,
        features=feats,
        meta_features=meta,
        samples="Metadata_pert_type == 'negcon'",
        method="mad_robustize",
    )
    neg = df[df.Metadata_pert_type == "negcon"][feats].astype("float64")
    assert len(neg) > 0
    med = neg.median()
    mad = (neg - med).abs().median() * 1.4826
    want = (df[feats].astype("float64") - med) / (mad + 1e-18)
    np.testing.assert_allclose(got[feats].to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-6)
    assert got[meta].astype(str).equals(df[meta].astype(str))


def test_pycytominer_feature_select_drops_what_the_rules_say(target2):
    from pycytominer import feature_select

    df, feats = target2
    data = df.copy()
    data["Cells_Constant_Feature"] = 1.0  # a feature variance_threshold must drop
    got = feature_select(
        data, features=[*feats, "Cells_Constant_Feature"], operation=["variance_threshold"]
    )
    kept = [c for c in got.columns if not c.startswith("Metadata_")]
    # by hand: a feature is dropped when its second most common value is rare next to the
    # most common one (freq_cut 0.05) or it has few distinct values (unique_cut 0.01)
    by_hand = []
    for c in [*feats, "Cells_Constant_Feature"]:
        counts = data[c].value_counts()
        ratio = counts.iloc[1] / counts.iloc[0] if len(counts) > 1 else 0.0
        if ratio >= 0.05 and data[c].nunique() / len(data) >= 0.01:
            by_hand.append(c)
    assert kept == by_hand and "Cells_Constant_Feature" not in kept


def _ap_by_hand(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of each profile retrieving its replicates by cosine similarity."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        pos = (labels == labels[i]) & others
        if not pos.any():
            continue
        order = np.argsort(-sim[i, others], kind="stable")
        rel = pos[others][order]
        hits = np.cumsum(rel)
        out[i] = float((hits[rel] / (np.flatnonzero(rel) + 1)).mean())
    return out


def test_copairs_average_precision_and_map_by_hand(target2):
    from copairs.map import average_precision, mean_average_precision
    from pycytominer import normalize

    df, feats = target2
    trt = df[df.Metadata_JCP2022.notna() & (df.Metadata_pert_type.isna())].reset_index(drop=True)
    assert trt.groupby("Metadata_JCP2022").size().max() >= 2  # TARGET2 plates replicate
    meta = trt[["Metadata_JCP2022", "Metadata_Plate", "Metadata_Well"]].astype(str)
    # on raw features the area (~900) dominates every cosine, and copairs' float32 ranks tie;
    # normalized features are what the workflow feeds it anyway
    normalized = normalize(
        trt, features=feats, meta_features=list(meta.columns), samples="all", method="mad_robustize"
    )
    x = normalized[feats].to_numpy(dtype="float64")
    ap = average_precision(
        meta,
        x,
        pos_sameby=["Metadata_JCP2022"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["Metadata_JCP2022"],
        progress_bar=False,
    )
    want = _ap_by_hand(x, meta.Metadata_JCP2022.to_numpy())
    np.testing.assert_allclose(ap.average_precision.to_numpy(dtype=float), want, rtol=1e-6)
    maps = mean_average_precision(
        ap, sameby=["Metadata_JCP2022"], null_size=200, threshold=0.05, seed=0, progress_bar=False
    )
    by_hand = pd.Series(want).groupby(meta.Metadata_JCP2022.to_numpy()).mean()
    got = maps.set_index("Metadata_JCP2022").mean_average_precision
    np.testing.assert_allclose(got.loc[by_hand.index].to_numpy(), by_hand.to_numpy(), rtol=1e-6)
    n_pos = int(ap.n_pos_pairs.max())
    chance = n_pos / int(ap.n_total_pairs.max())
    assert got.mean() > 20 * chance  # the demo's TARGET2 replicates resemble each other
