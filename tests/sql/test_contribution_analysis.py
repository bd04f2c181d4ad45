"""model_type='CONTRIBUTION_ANALYSIS' and ML.GET_INSIGHTS: every segment of the dimensions,
its metric in test and control rows, checked against the same figures computed with pandas."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from typing import Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, NotFound
from shipyard.sql import contribution_analysis as ca

# A small retail table: revenue and visits per region, channel and store, one week of test rows
# (is_test) against one week of control rows; day is the category of the by-category metric.
_ROWS = [
    {"region": r, "channel": c, "store": s, "revenue": float(v), "visits": float(n), "day": d}
    | {"is_test": t}
    for (r, c, s, v, n, d, t) in [
        ("north", "web", 1, 120, 30, "mon", True),
        ("north", "web", 1, 80, 20, "tue", True),
        ("north", "shop", 2, 50, 25, "mon", True),
        ("south", "web", 3, 90, 30, "wed", True),
        ("south", "shop", 3, 20, 10, "wed", True),
        ("south", "shop", 4, 10, 10, "thu", True),
        ("north", "web", 1, 60, 20, "mon", False),
        ("north", "shop", 2, 40, 20, "tue", False),
        ("north", "shop", 2, 10, 5, "tue", False),
        ("south", "web", 3, 100, 25, "mon", False),
        ("south", "shop", 3, 30, 15, "wed", False),
        ("south", "shop", 4, 30, 10, "fri", False),
    ]
]
_DIMS = ["region", "channel", "store"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("contribution"))
    workspace.load_table("demo.sales", _ROWS)
    yield workspace
    workspace.close()


def _create(ws: Any, name: str, metric: str, columns: str, **options: Any) -> Any:
    extra = "".join(f", {k}={v}" for k, v in options.items())
    return ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} OPTIONS(model_type='CONTRIBUTION_ANALYSIS', "
        f"contribution_metric='{metric}', is_test_col='is_test'{extra}) "
        f"AS SELECT {columns} FROM demo.sales"
    )


def _insights(ws: Any, name: str) -> list[dict[str, Any]]:
    return ws.sql(f"SELECT * FROM ML.GET_INSIGHTS(MODEL demo.{name})").to_arrow().to_pylist()  # type: ignore[no-any-return]


def _by_segment(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(r["contributors"]): r for r in rows}


def _segments() -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """Every segment of the dimensions (the 'all' one first) with its rows, by pandas."""
    df = pd.DataFrame(_ROWS)
    out: list[tuple[tuple[str, ...], pd.DataFrame]] = [(("all",), df)]
    for size in range(1, len(_DIMS) + 1):
        for dims in itertools.combinations(_DIMS, size):
            for values, part in df.groupby(list(dims)):
                key = tuple(
                    f"{d}={str(v).lower() if isinstance(v, bool) else v}"
                    for d, v in zip(dims, values, strict=True)
                )
                out.append((key, part))
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None and (b is None or math.isnan(b))
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _safe(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def test_summable_metric_matches_pandas(ws: Any) -> None:
    _create(
        ws, "sum", "SUM(revenue)", "region, channel, store, revenue, is_test", min_apriori_support=0
    )
    rows = _insights(ws, "sum")
    assert list(rows[0]) == [
        "contributors", "region", "channel", "store", "metric_test", "metric_control",
        "difference", "relative_difference", "unexpected_difference",
        "relative_unexpected_difference", "apriori_support", "contribution",
    ]  # fmt: skip
    got = _by_segment(rows)
    segments = _segments()
    assert set(got) == {key for key, _ in segments}  # every segment of every dimension subset
    df = pd.DataFrame(_ROWS)
    pop_t, pop_c = df[df.is_test].revenue.sum(), df[~df.is_test].revenue.sum()
    for key, part in segments:
        test, control = part[part.is_test].revenue.sum(), part[~part.is_test].revenue.sum()
        row = got[key]
        assert _close(row["metric_test"], test) and _close(row["metric_control"], control)
        assert _close(row["difference"], test - control)
        assert _close(row["relative_difference"], _safe(test - control, control))
        assert _close(row["apriori_support"], max(test / pop_t, control / pop_c))
        assert _close(row["contribution"], abs(test - control))
        if key == ("all",):
            assert row["unexpected_difference"] is None  # no complement
            continue
        expected = control * ((pop_t - test) / (pop_c - control))
        assert _close(row["unexpected_difference"], test - expected), key
        assert _close(row["relative_unexpected_difference"], _safe(test - expected, expected))
    # a hand-computed one: north/web is 200 in test, 60 in control; the rest goes 170 -> 210
    north_web = got[("region=north", "channel=web")]
    assert (north_web["region"], north_web["channel"], north_web["store"]) == ("north", "web", None)
    assert _close(north_web["unexpected_difference"], 200 - 60 * 170 / 210)
    # ordered by contribution, largest first
    contributions = [r["contribution"] for r in rows]
    assert contributions == sorted(contributions, reverse=True)


def test_summable_ratio_metric_matches_pandas(ws: Any) -> None:
    _create(
        ws,
        "ratio",
        "sum(revenue) / sum(visits)",
        "region, channel, revenue, visits, is_test",
        dimension_id_cols="['region', 'channel']",
        min_apriori_support=0,
    )
    rows = _insights(ws, "ratio")
    assert list(rows[0]) == [
        "contributors", "region", "channel", "metric_test", "metric_control",
        "metric_test_over_metric_control", "metric_test_over_complement",
        "metric_control_over_complement", "aumann_shapley_attribution", "apriori_support",
        "contribution",
    ]  # fmt: skip
    got = _by_segment(rows)
    df = pd.DataFrame(_ROWS)
    t, c = df[df.is_test], df[~df.is_test]
    for region in ("north", "south"):
        row = got[(f"region={region}",)]
        st, sc = t[t.region == region], c[c.region == region]
        ot, oc = t[t.region != region], c[c.region != region]
        ratio_t, ratio_c = st.revenue.sum() / st.visits.sum(), sc.revenue.sum() / sc.visits.sum()
        assert _close(row["metric_test"], ratio_t) and _close(row["metric_control"], ratio_c)
        assert _close(row["metric_test_over_metric_control"], ratio_t / ratio_c)
        assert _close(
            row["metric_test_over_complement"], ratio_t / (ot.revenue.sum() / ot.visits.sum())
        )
        assert _close(
            row["metric_control_over_complement"], ratio_c / (oc.revenue.sum() / oc.visits.sum())
        )
        assert _close(
            row["apriori_support"],
            max(st.revenue.sum() / t.revenue.sum(), sc.revenue.sum() / c.revenue.sum()),
        )
        assert _close(row["contribution"], abs(row["aumann_shapley_attribution"]))
    everything = got[("all",)]
    assert everything["metric_test_over_complement"] is None  # the complement is empty
    change = everything["metric_test"] - everything["metric_control"]
    # Aumann-Shapley: the attributions of a partition add up to the population's change
    for dim, values in (("region", ("north", "south")), ("channel", ("web", "shop"))):
        total = sum(got[(f"{dim}={v}",)]["aumann_shapley_attribution"] for v in values)
        assert _close(total, change)
    assert _close(everything["aumann_shapley_attribution"], change)


def test_summable_by_category_metric_matches_pandas(ws: Any) -> None:
    _create(
        ws,
        "bycat",
        "SUM(revenue)/COUNT(DISTINCT day)",
        "region, channel, revenue, day, is_test",
        min_apriori_support=0,
    )
    rows = _insights(ws, "bycat")
    assert list(rows[0]) == [
        "contributors", "region", "channel", "metric_test", "metric_control", "difference",
        "relative_difference", "metric_test_over_population", "metric_control_over_population",
        "apriori_support", "contribution",
    ]  # fmt: skip
    got = _by_segment(rows)
    df = pd.DataFrame(_ROWS)
    t, c = df[df.is_test], df[~df.is_test]
    pop_t = t.revenue.sum() / t.day.nunique()
    pop_c = c.revenue.sum() / c.day.nunique()
    for key, mask_t, mask_c in [
        (("all",), t.index == t.index, c.index == c.index),
        (("channel=shop",), t.channel == "shop", c.channel == "shop"),
        (("region=south", "channel=shop"), (t.region == "south") & (t.channel == "shop"),
         (c.region == "south") & (c.channel == "shop")),
    ]:  # fmt: skip
        st, sc = t[mask_t], c[mask_c]
        mt = st.revenue.sum() / st.day.nunique()
        mc = sc.revenue.sum() / sc.day.nunique()
        row = got[key]
        assert _close(row["metric_test"], mt) and _close(row["metric_control"], mc), key
        assert _close(row["difference"], mt - mc)
        assert _close(row["relative_difference"], (mt - mc) / mc)
        assert _close(row["metric_test_over_population"], mt / pop_t)
        assert _close(row["metric_control_over_population"], mc / pop_c)
        assert _close(
            row["apriori_support"],
            max(st.revenue.sum() / t.revenue.sum(), sc.revenue.sum() / c.revenue.sum()),
        )
        assert _close(row["contribution"], abs(mt - mc))


def test_apriori_support_prunes_small_segments(ws: Any) -> None:
    _create(
        ws,
        "all_segments",
        "SUM(revenue)",
        "region, channel, store, revenue, is_test",
        min_apriori_support=0,
    )
    everything = _insights(ws, "all_segments")
    _create(ws, "default_support", "SUM(revenue)", "region, channel, store, revenue, is_test")
    default = _insights(ws, "default_support")  # min_apriori_support 0.1 by default
    _create(
        ws,
        "big",
        "SUM(revenue)",
        "region, channel, store, revenue, is_test",
        min_apriori_support=0.3,
    )
    big = _insights(ws, "big")
    assert {tuple(r["contributors"]) for r in default} == {
        tuple(r["contributors"]) for r in everything if r["apriori_support"] >= 0.1
    }
    assert len(big) < len(default) <= len(everything)
    assert all(r["apriori_support"] >= 0.3 for r in big)
    assert ["all"] in [r["contributors"] for r in big]
    # store=4 is 10/370 of test and 30/270 of control: 0.111 passes 0.1, not 0.3
    assert ["store=4"] in [r["contributors"] for r in default]
    assert ["store=4"] not in [r["contributors"] for r in big]


def test_top_k_keeps_the_highest_support(ws: Any) -> None:
    _create(
        ws,
        "all_segments2",
        "SUM(revenue)",
        "region, channel, store, revenue, is_test",
        min_apriori_support=0,
    )
    everything = _insights(ws, "all_segments2")
    _create(
        ws,
        "top5",
        "SUM(revenue)",
        "region, channel, store, revenue, is_test",
        top_k_insights_by_apriori_support=5,
    )
    top = _insights(ws, "top5")
    assert len(top) == 5
    supports = sorted((r["apriori_support"] for r in everything), reverse=True)
    assert sorted((r["apriori_support"] for r in top), reverse=True) == supports[:5]
    assert [r["contribution"] for r in top] == sorted(
        (r["contribution"] for r in top), reverse=True
    )


def test_prune_redundant_insights_keeps_the_more_descriptive(ws: Any) -> None:
    # store 1 is only north/web, store 2 only north/shop: ['store=1'] and ['region=north',
    # 'channel=web', 'store=1'] … have equal metrics; the most descriptive is kept
    _create(
        ws,
        "unpruned",
        "SUM(revenue)",
        "region, channel, store, revenue, is_test",
        min_apriori_support=0,
    )
    _create(
        ws,
        "pruned",
        "SUM(revenue)",
        "region, channel, store, revenue, is_test",
        min_apriori_support=0,
        pruning_method="'prune_redundant_insights'",
    )
    unpruned = {tuple(r["contributors"]) for r in _insights(ws, "unpruned")}
    pruned = {tuple(r["contributors"]) for r in _insights(ws, "pruned")}
    assert pruned < unpruned
    full = ("region=north", "channel=web", "store=1")
    assert full in pruned
    for less in [("store=1",), ("region=north", "store=1"), ("channel=web", "store=1"),
                 ("region=north", "channel=web")]:  # fmt: skip
        assert less in unpruned and less not in pruned, less
    assert ("all",) in pruned and ("region=north",) in pruned  # north is more than north/web


def test_dimensions_default_to_the_other_columns_and_nulls_are_dropped(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.defaults OPTIONS(model_type='contribution_analysis', "
        "contribution_metric='SUM(revenue)', is_test_col='is_test', min_apriori_support=0) AS "
        "SELECT IF(store = 4, NULL, region) AS region, store, revenue, is_test FROM demo.sales"
    )
    rows = _insights(ws, "defaults")
    assert list(rows[0])[:3] == ["contributors", "region", "store"]
    everything = _by_segment(rows)[("all",)]
    # the store-4 rows (10 test, 30 control) have a NULL dimension: left out
    assert (everything["metric_test"], everything["metric_control"]) == (360.0, 240.0)
    assert all("store=4" not in r["contributors"] for r in rows)


def test_ml_functions_other_than_get_insights_refuse_the_model(ws: Any) -> None:
    _create(ws, "refused", "SUM(revenue)", "region, revenue, is_test")
    for sql in (
        "SELECT * FROM ML.PREDICT(MODEL demo.refused, TABLE demo.sales)",
        "SELECT * FROM ML.EVALUATE(MODEL demo.refused)",
        "SELECT * FROM ML.FEATURE_INFO(MODEL demo.refused)",
    ):
        with pytest.raises(InvalidArgument, match="ML.GET_INSIGHTS") as info:
            ws.sql(sql)
        assert "CONTRIBUTION_ANALYSIS" in str(info.value)
    ws.sql(
        "CREATE OR REPLACE MODEL demo.lin OPTIONS(model_type='linear_reg', "
        "input_label_cols=['revenue']) AS SELECT visits, revenue FROM demo.sales"
    )
    with pytest.raises(InvalidArgument, match="applies to CONTRIBUTION_ANALYSIS models"):
        ws.sql("SELECT * FROM ML.GET_INSIGHTS(MODEL demo.lin)")
    version = ws.models.get_version("demo.refused")
    assert (version.model_type, version.flavor, version.task) == (
        "CONTRIBUTION_ANALYSIS",
        "insights",
        "contribution_analysis",
    )


@pytest.mark.parametrize(
    ("options", "columns", "message"),
    [
        ("is_test_col='is_test'", "region, revenue, is_test", "needs option contribution_metric"),
        ("contribution_metric='SUM(revenue)'", "region, revenue, is_test",
         "needs option is_test_col"),
        ("contribution_metric='AVG(revenue)', is_test_col='is_test'", "region, revenue, is_test",
         "not of a supported form"),
        ("contribution_metric='SUM(revenue * 2)', is_test_col='is_test'",
         "region, revenue, is_test", "not of a supported form"),
        ("contribution_metric='SUM(region)', is_test_col='is_test'", "region, revenue, is_test",
         "must be numeric"),
        ("contribution_metric='SUM(revenue)', is_test_col='store'", "region, revenue, store",
         "must be BOOL"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test', dimension_id_cols=['town']",
         "region, revenue, is_test", "does not return"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test', dimension_id_cols=['region']",
         "region, channel, revenue, is_test", "also returns channel"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test', min_apriori_support=1.5",
         "region, revenue, is_test", "min_apriori_support"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test', min_apriori_support=-0.1",
         "region, revenue, is_test", "min_apriori_support"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test', min_apriori_support=0.1, "
         "top_k_insights_by_apriori_support=3", "region, revenue, is_test", "exclude each other"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test', pruning_method='SOME'",
         "region, revenue, is_test", "pruning_method"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test', num_clusters=3",
         "region, revenue, is_test", "unknown option 'num_clusters'"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test'",
         "region, revenue, visits, is_test", "'visits' has type double"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test'",
         "region, revenue - 100 AS revenue, is_test", "negative values"),
        ("contribution_metric='SUM(revenue)', is_test_col='is_test'",
         "region, revenue, TRUE AS is_test", "needs both"),
    ],
)  # fmt: skip
def test_bad_options_are_clear_errors(ws: Any, options: str, columns: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ws.sql(
            "CREATE OR REPLACE MODEL demo.bad OPTIONS(model_type='CONTRIBUTION_ANALYSIS', "
            f"{options}) AS SELECT {columns} FROM demo.sales"
        )
    with pytest.raises(NotFound):  # nothing was created
        ws.models.get("demo.bad")


def test_negative_metrics_are_allowed_without_support_pruning(ws: Any) -> None:
    _create(
        ws,
        "negative",
        "SUM(revenue)",
        "region, revenue - 100 AS revenue, is_test",
        min_apriori_support=0,
    )
    everything = _by_segment(_insights(ws, "negative"))[("all",)]
    assert (everything["metric_test"], everything["metric_control"]) == (-230.0, -330.0)


def test_get_insights_takes_only_the_model(ws: Any) -> None:
    _create(ws, "only_model", "SUM(revenue)", "region, revenue, is_test")
    with pytest.raises(InvalidArgument, match="takes only the model"):
        ws.sql("SELECT * FROM ML.GET_INSIGHTS(MODEL demo.only_model, TABLE demo.sales)")
    with pytest.raises(InvalidArgument, match="no parameter 'top_k'"):
        ws.sql("SELECT * FROM ML.GET_INSIGHTS(MODEL demo.only_model, STRUCT(3 AS top_k))")
    with pytest.raises(NotFound):
        ws.sql("SELECT * FROM ML.GET_INSIGHTS(MODEL demo.no_such_model)")


def test_insights_are_stored_in_the_model_package(tmp_path: Any) -> None:
    with sy.connect(tmp_path / "home") as first:
        first.load_table("demo.sales", _ROWS)
        _create(
            first,
            "kept",
            "SUM(revenue)",
            "region, channel, revenue, is_test",
            min_apriori_support=0,
        )
        before = _insights(first, "kept")
        first.sql("DROP TABLE demo.sales")  # the insights no longer need the data
    with sy.connect(tmp_path / "home") as again:
        assert _insights(again, "kept") == before
        manifest = again.models.manifest("demo.kept")
        assert "insights.parquet" in manifest.files
        assert manifest.options["contribution_metric"] == "SUM(revenue)"


# -- many dimensions: the level-by-level (apriori) search ----------------------------------------


def _random_rows(n: int, d: int, seed: int) -> pa.Table:
    """Random rows of ``d`` dimensions (INT64, STRING and BOOL, a few NULLs) and integer-valued
    metrics, so that sums are exact whatever order DuckDB adds them in."""
    rng = random.Random(seed)
    cols: dict[str, list[Any]] = {}
    for i in range(d):
        values: list[Any] = [[0, 1, 2], ["x", "y", "z", "w"], [True, False]][i % 3]
        cols[f"d{i}"] = [None if rng.random() < 0.01 else rng.choice(values) for _ in range(n)]
    cols["m"] = [float(rng.randint(0, 20)) for _ in range(n)]
    cols["v"] = [float(rng.randint(1, 9)) for _ in range(n)]
    cols["k"] = [rng.randint(0, 5) for _ in range(n)]
    cols["t"] = [rng.random() < 0.5 for _ in range(n)]
    return pa.table(cols)


def _compute(rows: pa.Table, strategy: Literal["single", "apriori"], **options: Any) -> pa.Table:
    cur = duckdb.connect()
    try:
        cur.register(ca._ROWS, rows)
        opts = ca.ContributionAnalysisOptions(is_test_col="t", **options)
        return ca.compute_insights(cur, rows.schema, opts, strategy=strategy)[0]
    finally:
        cur.close()


@pytest.mark.parametrize(
    ("metric", "dropped"),
    [("SUM(m)", ["v", "k"]), ("SUM(m)/SUM(v)", ["k"]), ("SUM(m)/COUNT(DISTINCT k)", ["v"])],
)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"min_apriori_support": 0.02},
        {"min_apriori_support": 0.3},
        {"min_apriori_support": 1.0},
        {"top_k_insights_by_apriori_support": 1},
        {"top_k_insights_by_apriori_support": 25},
        {"top_k_insights_by_apriori_support": 100_000},
        {"min_apriori_support": 0.05, "pruning_method": "PRUNE_REDUNDANT_INSIGHTS"},
    ],
)
def test_level_by_level_search_gives_the_single_query_table(
    metric: str, dropped: list[str], options: dict[str, Any]
) -> None:
    rows = _random_rows(300, 6, seed=len(metric)).drop(dropped)
    single = _compute(rows, "single", contribution_metric=metric, **options)
    searched = _compute(rows, "apriori", contribution_metric=metric, **options)
    assert single.num_rows > 0
    assert searched.schema == single.schema
    assert searched.to_pylist() == single.to_pylist()  # same rows, values and order


def test_top_k_of_an_all_zero_metric_falls_back_to_the_single_query() -> None:
    rows = _random_rows(50, 4, seed=3).drop(["v", "k"])
    rows = rows.set_column(rows.schema.get_field_index("m"), "m", pa.array([0.0] * 50))
    options = {"contribution_metric": "SUM(m)", "top_k_insights_by_apriori_support": 5}
    assert (
        _compute(rows, "apriori", **options).to_pylist()
        == _compute(rows, "single", **options).to_pylist()
    )


def _brute_force(rows: list[dict[str, Any]], dims: list[str], threshold: float) -> dict:
    """Every segment whose apriori support reaches ``threshold``, by a depth-first walk over the
    rows in Python (independent of the SQL): key -> (metric_test, metric_control, support)."""
    total_t = sum(r["m"] for r in rows if r["t"])
    total_c = sum(r["m"] for r in rows if not r["t"])
    out: dict[tuple[str, ...], tuple[float, float, float]] = {}

    def walk(part: list[dict[str, Any]], start: int, key: tuple[str, ...]) -> None:
        test = sum(r["m"] for r in part if r["t"])
        control = sum(r["m"] for r in part if not r["t"])
        support = max(test / total_t, control / total_c)
        if support < threshold:
            return  # a sub-segment has no more support
        out[key or ("all",)] = (test, control, support)
        for j in range(start, len(dims)):
            groups: dict[Any, list[dict[str, Any]]] = {}
            for r in part:
                groups.setdefault(r[dims[j]], []).append(r)
            for value, group in groups.items():
                text = str(value).lower() if isinstance(value, bool) else str(value)
                walk(group, j + 1, (*key, f"{dims[j]}={text}"))

    walk(rows, 0, ())
    return out


def test_twenty_dimensions_with_a_threshold_match_a_brute_force(ws: Any) -> None:
    dims = [f"d{i}" for i in range(20)]
    table = _random_rows(120, 20, seed=7).drop(["v", "k"])
    rows = [r for r in table.to_pylist() if all(r[d] is not None for d in dims)]
    ws.load_table("demo.wide", table)
    ws.sql(
        "CREATE OR REPLACE MODEL demo.wide_drivers OPTIONS(model_type='CONTRIBUTION_ANALYSIS', "
        "contribution_metric='SUM(m)', is_test_col='t', min_apriori_support=0.15) "
        "AS SELECT * FROM demo.wide"
    )
    got = _by_segment(_insights(ws, "wide_drivers"))
    expected = _brute_force(rows, dims, 0.15)
    assert len(expected) > 100  # segments of several levels
    assert set(got) == set(expected)
    for key, (test, control, support) in expected.items():
        row = got[key]
        assert (row["metric_test"], row["metric_control"]) == (test, control)
        assert _close(row["apriori_support"], support)
    # top-k over the same twenty columns: the k of highest support
    ws.sql(
        "CREATE OR REPLACE MODEL demo.wide_top OPTIONS(model_type='CONTRIBUTION_ANALYSIS', "
        "contribution_metric='SUM(m)', is_test_col='t', top_k_insights_by_apriori_support=30) "
        "AS SELECT * FROM demo.wide"
    )
    top = _insights(ws, "wide_top")
    supports = sorted((s for _, _, s in expected.values()), reverse=True)
    assert len(top) == 30
    assert _close(min(r["apriori_support"] for r in top), supports[29])


def test_dimension_limits_are_clear_errors_and_leave_the_model_alone(ws: Any) -> None:
    wide = _random_rows(60, 51, seed=11).drop(["v", "k"])
    ws.load_table("demo.too_wide", wide)
    ws.sql(
        "CREATE OR REPLACE MODEL demo.limited OPTIONS(model_type='CONTRIBUTION_ANALYSIS', "
        "contribution_metric='SUM(m)', is_test_col='t') AS SELECT d0, m, t FROM demo.too_wide"
    )
    before = _insights(ws, "limited")
    fourteen = ", ".join(f"d{i}" for i in range(14))
    for columns, support, message in [
        ("*", "0.1", "at most 50 dimension columns, got 51.*name fewer"),
        (f"{fourteen}, m, t", "0", "min_apriori_support=0 .* at most 13 .* got 14; set "
         "min_apriori_support above 0"),
    ]:  # fmt: skip
        with pytest.raises(InvalidArgument, match=message):
            ws.sql(
                "CREATE OR REPLACE MODEL demo.limited OPTIONS(model_type="
                "'CONTRIBUTION_ANALYSIS', contribution_metric='SUM(m)', is_test_col='t', "
                f"min_apriori_support={support}) AS SELECT {columns} FROM demo.too_wide"
            )
        assert _insights(ws, "limited") == before  # the model it would replace is intact
    with pytest.raises(NotFound):
        ws.models.get("demo.never_made")
    # 50 columns with a threshold are fine, and so is 13 without one
    ws.sql(
        "CREATE OR REPLACE MODEL demo.fifty OPTIONS(model_type='CONTRIBUTION_ANALYSIS', "
        "contribution_metric='SUM(m)', is_test_col='t', min_apriori_support=0.6) AS SELECT "
        + ", ".join(f"d{i}" for i in range(50))
        + ", m, t FROM demo.too_wide"
    )
    fifty = [f"d{i}" for i in range(50)]
    rows = [r for r in wide.to_pylist() if all(r[d] is not None for d in fifty)]
    assert set(_by_segment(_insights(ws, "fifty"))) == set(_brute_force(rows, fifty, 0.6))
