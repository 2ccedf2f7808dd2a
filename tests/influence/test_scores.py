"""Influence maths against hand-worked answers, networkx as an independent reference, and real Higgs windows."""

from __future__ import annotations

import gzip
import math
import random
from collections import defaultdict

import networkx as nx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from clout.influence.scores import (
    InfluenceConfig,
    UserInfluence,
    clean_influence,
    long_term_score,
    pagerank,
    rounded_score,
    window_influence,
)
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX, KIND_ORDER

CONFIG = InfluenceConfig()
REPOST, LIKE, MENTION, QUOTE = (KIND_INDEX[k] for k in ("repost", "like", "mention", "quote"))


def ev(actor: str, target: str, kind: int = REPOST, ts: int = 1_700_000_000_000, platform: str = "x") -> Event:
    return Event(ts, actor, target, kind, platform)


def expected_score(q: float, n: int, decades: float = 4.0) -> float:
    """The documented scale, written out independently."""
    return 1 + 99 * math.log10(1 / max(1 - q, 1 / (2 * n))) / max(decades, math.log10(2 * n))


# --------------------------------------------------------------------------------------------- PageRank

def test_pagerank_of_one_edge_is_the_worked_answer() -> None:
    """a -> b, b dangling: x_b = 0.075 + 0.85(x_a + x_b/2), x_a + x_b = 1 => x_b = 0.925 / 1.425."""
    x = pagerank(2, np.array([0]), np.array([1]), np.array([1.0]), tol=1e-12, max_iter=1000)
    assert x == pytest.approx([0.5 / 1.425, 0.925 / 1.425], abs=1e-10)


def test_pagerank_of_a_cycle_is_uniform_and_of_no_edges_too() -> None:
    assert pagerank(5, np.arange(5), (np.arange(5) + 1) % 5, np.ones(5)) == pytest.approx(np.full(5, 0.2))
    assert pagerank(3, np.array([], int), np.array([], int), np.array([])) == pytest.approx(np.full(3, 1 / 3))
    assert len(pagerank(0, np.array([], int), np.array([], int), np.array([]))) == 0


@pytest.mark.parametrize("src, dst, weight", [([0], [1], [-1.0]), ([0], [3], [1.0]), ([0], [1], [math.nan]),
                                              ([0, 1], [1], [1.0])])
def test_pagerank_rejects_bad_edges(src, dst, weight) -> None:
    with pytest.raises(ValueError):
        pagerank(3, np.array(src), np.array(dst), np.array(weight))


edge_lists = st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.sampled_from([0.5, 1.0, 2.0, 3.0, 0.0])),
    max_size=40)))


@given(edge_lists, st.sampled_from([0.5, 0.85, 0.95]), st.randoms(use_true_random=False))
@settings(max_examples=150, deadline=None)
def test_pagerank_is_networkx_pagerank(graph, damping, rnd) -> None:
    """Parallel edges add up, self-loops and zero weights count as networkx counts them, and the edge
    order does not change a single bit."""
    n, edges = graph
    multi = nx.MultiDiGraph()
    multi.add_nodes_from(range(n))
    multi.add_weighted_edges_from(edges)
    reference = nx.pagerank(multi, alpha=damping, tol=1e-10, max_iter=500)
    src, dst, weight = (np.array(column, dtype=float if i == 2 else int) for i, column in
                        enumerate(zip(*edges, strict=True))) if edges else (np.array([], int),) * 2 + (np.array([]),)
    ours = pagerank(n, src, dst, weight, damping=damping, tol=1e-10, max_iter=500)
    assert ours == pytest.approx([reference[i] for i in range(n)], abs=1e-9)
    order = list(range(len(edges)))
    rnd.shuffle(order)
    assert np.array_equal(pagerank(n, src[order], dst[order], weight[order], damping, 1e-10, 500), ours)


# ------------------------------------------------------------------------------------- window measures

def test_reach_and_amplification_exclude_self_and_count_distinct_engagers() -> None:
    events = [ev("a", "hub"), ev("a", "hub", QUOTE), ev("b", "hub"), ev("c", "hub", LIKE), ev("hub", "hub"),
              ev("hub", "hub", LIKE), ev("loner", "loner")]
    result = window_influence(events, CONFIG)
    hub = result["hub"]
    assert hub.reach == 3  # a, b, c; not hub itself
    assert hub.amplification == pytest.approx(3 / 4)  # 2 reposts + 1 quote of 4 engagements received
    assert hub.rank == 1 and hub.platform == "x"
    for user in ("a", "b", "c", "loner"):  # received nothing from anyone else
        assert (result[user].score, result[user].reach, result[user].percentile) == (1, 0, 0.0)
        assert result[user].rank == 2 and tuple(result[user].parts) == (0.0, 0.0, 0.0)
    assert set(result) == {"a", "b", "c", "hub", "loner"}
    assert sum(info.network for info in result.values()) == pytest.approx(1.0)


def test_score_follows_the_documented_formula() -> None:
    """t_k receives k reposts from k fresh engagers: reach and network rise with k, amplification is
    1 for all (a tie: percentile 1/2). With 4 active users each part of t_k is (k - 1/2)/4, so is q."""
    events = [ev(f"e{k}_{i}", f"t{k}") for k in range(1, 5) for i in range(k)]
    result = window_influence(events, CONFIG)
    for k in range(1, 5):
        info = result[f"t{k}"]
        p = (k - 0.5) / 4
        assert info.parts == pytest.approx((p, 0.5, p))
        assert info.percentile == pytest.approx(100 * p)
        assert info.raw == pytest.approx(expected_score(p, 4))
        assert info.score == round(expected_score(p, 4)) and info.rank == 5 - k
    assert result["e1_0"].rank == 5 and result["e1_0"].raw == 1.0


def test_an_engagement_from_an_influential_account_counts_more() -> None:
    """Both targets get one repost; star's reposter is itself engaged by 20 accounts, nobody's by none."""
    events = [ev(f"fan{i}", "star") for i in range(20)] + [ev("star", "t_star"), ev("nobody", "t_nobody")]
    result = window_influence(events, CONFIG)
    assert result["t_star"].reach == result["t_nobody"].reach == 1
    assert result["t_star"].network > result["t_nobody"].network
    assert result["t_star"].raw > result["t_nobody"].raw


def test_kind_weights_shape_the_network_not_reach() -> None:
    """PageRank splits an engager's influence over its engagements by weight: fan's repost passes
    3x what its like passes (a lone engagement passes everything, whatever its kind)."""
    events = [ev("fan", "reposted"), ev("fan", "liked", LIKE)]
    result = window_influence(events, InfluenceConfig(tol=1e-12, max_iter=1000))
    share = CONFIG.damping * result["fan"].network
    assert result["reposted"].network - result["liked"].network == pytest.approx(share * (3 / 4 - 1 / 4))
    assert result["reposted"].reach == result["liked"].reach == 1
    only_likes = InfluenceConfig(kind_weights={"like": 1.0})  # reposts weigh 0 in the network, still reach
    result = window_influence(events, only_likes)
    assert result["reposted"].reach == 1 and result["reposted"].network < result["liked"].network


def test_platform_is_the_users_most_frequent() -> None:
    events = [ev("a", "b", platform="p2"), ev("a", "c", platform="p1"), ev("d", "a", platform="p1"),
              ev("e", "b", platform="p1"), ev("f", "b", platform="p2")]
    result = window_influence(events, CONFIG)
    assert {u: i.platform for u, i in result.items()} == {"a": "p1", "b": "p2", "c": "p1", "d": "p1", "e": "p1",
                                                           "f": "p2"}


def test_empty_window() -> None:
    assert window_influence([], CONFIG) == {}
    assert clean_influence([], CONFIG, {}, {}) == {}


def test_to_json_is_the_layout_influence_json() -> None:
    info = window_influence([ev("a", "b"), ev("c", "b", LIKE)], CONFIG)["b"]
    doc = orjson.loads(info.to_json(clean_score=42.5, final=True))
    assert set(doc) == {"score", "reach", "amplification", "network", "parts", "rank", "percentile", "platform",
                        "clean_score", "final"}
    assert set(doc["parts"]) == {"reach", "amplification", "network"}
    assert (doc["clean_score"], doc["final"], doc["reach"], doc["amplification"]) == (43, True, 2, 0.5)
    assert orjson.loads(info.to_json(None, False))["clean_score"] is None


def test_rounding_is_half_up() -> None:
    assert [rounded_score(x) for x in (1.0, 50.5, 50.49, 99.5, 100.0)] == [1, 51, 50, 100, 100]


@pytest.mark.parametrize("kwargs", [
    {"kind_weights": {"retweet": 1.0}}, {"kind_weights": {"like": -1.0}}, {"kind_weights": {"like": 0.0}},
    {"kind_weights": {"like": math.inf}}, {"damping": 1.0}, {"damping": 0.0}, {"tol": 0.0}, {"max_iter": 0},
    {"reach_weight": -0.1}, {"reach_weight": 0.0, "amplification_weight": 0.0, "network_weight": 0.0},
    {"score_decades": 0.0}, {"half_life_s": 0}, {"history_len": 0},
])
def test_config_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError):
        InfluenceConfig(**kwargs)


# --------------------------------------------------------------------------------- properties of windows

users = st.sampled_from([f"u{i}" for i in range(15)])
windows = st.lists(st.builds(ev, users, users, st.integers(0, len(KIND_ORDER) - 1),
                             platform=st.sampled_from(["x", "y"])), max_size=60)


@given(windows, st.dictionaries(users, st.sampled_from([0.0, 0.25, 1.0]), max_size=4),
       st.randoms(use_true_random=False))
@settings(max_examples=120, deadline=None)
def test_same_events_in_any_order_give_identical_results(events, weights, rnd) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert window_influence(iter(shuffled), CONFIG, weights) == window_influence(events, CONFIG, weights)
    raw = window_influence(events, CONFIG)
    assert clean_influence(shuffled, CONFIG, raw, weights) == clean_influence(events, CONFIG, raw, weights)


@given(windows)
@settings(max_examples=120, deadline=None)
def test_window_invariants(events) -> None:
    result = window_influence(events, CONFIG)
    assert set(result) == {e.actor for e in events} | {e.target for e in events}
    for user, info in result.items():
        engagers = {e.actor for e in events if e.target == user and e.actor != user}
        assert info.reach == len(engagers)
        assert 1 <= info.score <= 100 and 1.0 <= info.raw <= 100.0 and 0.0 <= info.amplification <= 1.0
        assert all(0.0 <= p <= 1.0 for p in info.parts) and 0.0 <= info.percentile <= 100.0
        assert info.rank == 1 + sum(other.raw > info.raw for other in result.values())
        if not engagers:
            assert (info.raw, info.percentile) == (1.0, 0.0)
    if result:
        assert sum(info.network for info in result.values()) == pytest.approx(1.0)
    # the clean score without any flagged actor is the raw score, to the bit
    assert clean_influence(events, CONFIG, result, {}) == {u: info.raw for u, info in result.items()}


def test_clean_score_drops_an_inflated_account_on_the_raw_scale() -> None:
    """`bought` owes its reach to 30 flagged accounts; the honest users' engagers are not flagged, so
    their clean scores stay where their raw scores are (up to the places `bought` vacates)."""
    rnd = random.Random(7)
    events = [ev(f"bot{i}", "bought") for i in range(30)]
    events += [ev(f"fan{rnd.randrange(600)}", f"honest{int(rnd.paretovariate(1.2))}",
                  rnd.choice([REPOST, LIKE, MENTION])) for _ in range(3000)]
    raw = window_influence(events, CONFIG)
    weights = {f"bot{i}": 0.0 for i in range(30)}
    clean = clean_influence(events, CONFIG, raw, weights)
    assert raw["bought"].percentile > 90 and clean["bought"] == 1.0
    honest = [u for u in raw if u.startswith("honest")]
    change = np.abs([clean[u] - raw[u].raw for u in honest])
    assert len(honest) > 50 and np.median(change) < 1.0 and change.max() < 5.0
    assert spearmanr([clean[u] for u in honest], [raw[u].raw for u in honest]).statistic > 0.99
    half = clean_influence(events, CONFIG, raw, {b: 0.5 for b in weights})
    assert 1.0 < half["bought"] < raw["bought"].raw  # down-weighted, not removed
    with pytest.raises(ValueError):
        clean_influence(events, CONFIG, raw, {"bot1": 1.5})


# ---------------------------------------------------------------------------------------------- long term

PERIOD, DAY = 900, 86_400


def test_long_term_of_a_steady_user_is_their_score() -> None:
    now = 1_700_000_000
    history = [(now - k * PERIOD, 60.0) for k in range(96)]
    assert long_term_score(history, now, PERIOD, DAY, 96) == pytest.approx(60.0)
    assert long_term_score([*history, (now - 96 * PERIOD, 100.0), (now + PERIOD, 100.0)], now, PERIOD, DAY, 96) \
        == pytest.approx(60.0)  # older than the history and newer than now: both ignored
    assert long_term_score([], now, PERIOD, DAY, 96) == 0.0


def test_a_quiet_hour_barely_moves_a_reputation_and_a_quiet_day_halves_its_weight() -> None:
    now = 1_700_000_000
    quiet_hour = [(now - k * PERIOD, 60.0) for k in range(4, 96)]  # the last four 15-min windows absent
    assert 0.94 * 60 < long_term_score(quiet_hour, now, PERIOD, DAY, 96) < 60.0
    one_window_a_day_ago = long_term_score([(now - DAY, 80.0)], now, PERIOD, DAY, 97)
    one_window_now = long_term_score([(now, 80.0)], now, PERIOD, DAY, 97)
    assert one_window_a_day_ago == pytest.approx(one_window_now / 2)


@given(st.lists(st.tuples(st.integers(0, 200).map(lambda k: 1_700_000_000 - k * PERIOD),
                          st.floats(1.0, 100.0)), max_size=50, unique_by=lambda entry: entry[0]))
def test_long_term_is_bounded_by_the_scores_and_order_free(history) -> None:
    value = long_term_score(history, 1_700_000_000, PERIOD, DAY, 96)
    assert 0.0 <= value <= max((s for _, s in history), default=0.0) + 1e-9
    assert long_term_score(list(reversed(history)), 1_700_000_000, PERIOD, DAY, 96) == value


def test_long_term_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        long_term_score([], 0, 0, DAY, 96)


# ------------------------------------------------------------------------- real Higgs windows vs networkx

HIGGS_KIND = {"RT": KIND_INDEX["repost"], "MT": KIND_INDEX["mention"], "RE": KIND_INDEX["reply"]}
HOUR = 3600
# the busiest hour (2012-07-04 06:00 UTC, 45,861 events: the announcement), the hour after (35,030), and
# the busiest hours of the day before (07-03 18:00, 2,349), the day after (07-05 06:00, 5,336) and 07-06 (2,804)
HIGGS_WINDOWS = (1_341_381_600, 1_341_385_200, 1_341_338_400, 1_341_468_000, 1_341_579_600)


@pytest.fixture(scope="module")
def higgs_windows(higgs_path) -> dict[int, list[Event]]:
    windows: dict[int, list[Event]] = defaultdict(list)
    with gzip.open(higgs_path, "rt") as lines:
        for line in lines:
            actor, target, ts, kind = line.split()
            start = int(ts) - int(ts) % HOUR
            if start in HIGGS_WINDOWS:
                windows[start].append(Event(int(ts) * 1000, actor, target, HIGGS_KIND[kind], "twitter"))
    return windows


@pytest.mark.parametrize("start", HIGGS_WINDOWS)
def test_network_influence_agrees_with_networkx_on_real_higgs_windows(higgs_windows, start) -> None:
    events = higgs_windows[start]
    assert len(events) > 1000
    ours = window_influence(events, CONFIG)
    graph = nx.DiGraph()
    graph.add_nodes_from(ours)
    weights = CONFIG.kind_weights
    for e in events:
        if e.actor != e.target:
            w = weights[KIND_ORDER[e.kind]]
            if graph.has_edge(e.actor, e.target):
                graph[e.actor][e.target]["weight"] += w
            else:
                graph.add_edge(e.actor, e.target, weight=w)
    reference = nx.pagerank(graph, alpha=CONFIG.damping, tol=CONFIG.tol, max_iter=CONFIG.max_iter)
    nodes = sorted(ours)
    rho = spearmanr([ours[u].network for u in nodes], [reference[u] for u in nodes]).statistic
    assert rho >= 0.999, f"window {start}: Spearman {rho}"
    assert _top(100, {u: ours[u].network for u in nodes}) == _top(100, reference)


def _top(k: int, values: dict[str, float]) -> set[str]:
    """The k highest; structurally equivalent users tie exactly (in both implementations, up to the
    last bits), so values are compared to 12 significant digits and ties broken by id."""
    ranked = sorted(values, key=lambda u: (-float(f"{values[u]:.12g}"), u))
    return set(ranked[:k])


def test_influence_of_a_busy_higgs_hour_is_fast_and_deterministic(higgs_windows) -> None:
    events = higgs_windows[HIGGS_WINDOWS[0]]
    first = window_influence(events, CONFIG)
    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    assert window_influence(shuffled, CONFIG) == first
    best = min(first.values(), key=lambda info: info.rank)
    assert isinstance(best, UserInfluence) and best.raw == 100.0  # > 5,000 active users: the top reaches 100
    assert sorted(info.raw for info in first.values())[-2] < 100.0  # and only the top
