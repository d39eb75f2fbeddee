"""The surge detector is a pure function: check its statistical behaviour directly."""

import pytest

from pipeline.alerts.detect import baseline_share, judge, judge_recent, transition
from pipeline.config import Thresholds

TH = Thresholds()
BASE = (7 * 24 * 50, 7 * 24 * 10)  # a week at 50 stories/h, 20% negative
BASE_N, BASE_K = BASE


def test_normal_hour_does_not_alert():
    v = judge(50, 10, BASE_N, BASE_K, 0.2)
    assert v.severity is None and not v.elevated
    assert v.baseline_share == pytest.approx(0.2, abs=0.005)


def test_doubling_of_the_negative_share_at_normal_volume_alerts_within_the_hour():
    v = judge(50, 20, BASE_N, BASE_K, 0.2)  # 40% vs 20%
    assert v.severity in ("warning", "critical") and v.p_value < TH.warning_p and v.ratio >= 2


def test_pooling_with_the_previous_hour_catches_what_one_hour_cannot_prove():
    hour, previous = (20, 9), (20, 9)  # 45% vs 20% at 20 stories/h
    assert judge(*hour, BASE_N, BASE_K, 0.2).severity is None
    assert judge_recent(hour, [previous], BASE, 0.2).severity == "warning"
    assert judge_recent(hour, [previous], BASE, 0.2, Thresholds(pool_hours=1)).severity is None
    # a calm previous hour dilutes a small blip back under the threshold
    assert judge_recent((20, 8), [(20, 3)], BASE, 0.2).severity is None
    # a surge that has ended raises nothing new, but its alert is resolved only one calm hour later
    ended = judge_recent((50, 10), [(50, 30)], BASE, 0.2)
    assert ended.severity is None and ended.elevated
    assert transition(True, ended).action == "update"
    assert transition(True, judge_recent((50, 10), [(50, 10)], BASE, 0.2)).action == "resolve"


def test_longer_pools_prove_a_slow_surge_and_stop_at_a_gap():
    """Four hours at 40% vs 20% on 15 stories/h: no single or two-hour look proves it (p 0.06, 0.009), four do."""
    hour, before = (15, 6), [(15, 6), (15, 6), (15, 6)]
    assert judge_recent(hour, before, BASE, 0.2, Thresholds(pool_hours=2)).severity is None
    v = judge_recent(hour, before, BASE, 0.2, Thresholds(pool_hours=4))
    assert v.severity == "warning" and v.p_value < TH.warning_p
    assert v.observed_share == pytest.approx(6 / 15)  # the hour's own share is what is reported
    # an hour with no stories ends the pool: older hours across the gap are not added
    assert judge_recent(hour, [(15, 6), (0, 0), (15, 6)], BASE, 0.2, Thresholds(pool_hours=4)).severity is None
    # the current hour back at baseline: the long pool alone raises nothing
    assert judge_recent((15, 3), before, BASE, 0.2, Thresholds(pool_hours=4)).severity is None


def test_severity_grows_with_the_surge():
    assert judge(50, 20, BASE_N, BASE_K, 0.2).severity == "warning"
    assert judge(50, 30, BASE_N, BASE_K, 0.2).severity == "critical"


def test_low_volume_never_alerts_even_when_all_negative():
    v = judge(3, 3, BASE_N, BASE_K, 0.2)
    assert v.severity is None and v.elevated  # elevated, but 3 stories are not evidence enough


def test_thin_baseline_is_smoothed_toward_the_overall_share():
    assert baseline_share(0, 2, 0.2, TH.prior_strength) == pytest.approx(4 / 22)
    assert judge(10, 3, 2, 0, 0.2).severity is None  # 30% vs a smoothed ~18% is no surge


def test_effect_size_guard_on_busy_topics():
    # 500 stories at 24% vs 20% is "significant" but not a surge worth a page
    v = judge(500, 120, 100_000, 20_000, 0.2)
    assert v.p_value < 0.05 and v.severity is None


def test_invalid_counts_are_rejected():
    with pytest.raises(ValueError):
        judge(5, 6, BASE_N, BASE_K, 0.2)


@pytest.mark.parametrize(
    "live, stories, negatives, action",
    [
        (False, 50, 20, "open"),
        (True, 50, 20, "update"),
        (True, 50, 10, "resolve"),
        (True, 50, 14, "update"),  # 28% vs 20%: still elevated, keep the alert open
        (False, 50, 10, "none"),
    ],
)
def test_one_surge_is_one_alert(live, stories, negatives, action):
    assert transition(live, judge(stories, negatives, BASE_N, BASE_K, 0.2)).action == action


def test_regime_needs_enough_baseline_days_then_sees_a_sustained_rise():
    from pipeline.alerts.detect import judge_regime
    from pipeline.config import Thresholds

    th = Thresholds()
    calm = [(100, 20 + (i % 5) - 2) for i in range(60)]  # 18-22 % a day
    cold = judge_regime((300, 120), calm[:10], th)
    assert not cold.judged and cold.severity is None  # ten days are not a baseline
    quiet = judge_regime((300, 63), calm, th)
    assert quiet.judged and quiet.severity is None and not quiet.elevated
    rise = judge_regime((300, 90), calm, th)  # 30 % for three days against 20 %
    assert rise.severity == "warning" and rise.ratio == pytest.approx(1.5) and rise.z > th.regime_z
    crash = judge_regime((300, 150), calm, th)
    assert crash.severity == "critical"
    small = judge_regime((300, 70), calm, th)  # 23 %: significant perhaps, but not 1.3 x the baseline
    assert small.severity is None and small.elevated
    thin = [(15, 3)] * 60  # days with fewer than regime_min_day_stories stories do not count
    assert not judge_regime((300, 150), thin, th).judged


def test_regime_uses_the_baselines_own_day_to_day_spread():
    """A baseline whose days swing widely needs a bigger rise than a steady one (overdispersion)."""
    from pipeline.alerts.detect import judge_regime
    from pipeline.config import Thresholds

    steady = [(200, 40)] * 40
    swinging = [(200, 20 if i % 2 else 60) for i in range(40)]  # the same 20 % on average
    assert judge_regime((600, 165), steady).severity is not None
    assert judge_regime((600, 165), swinging, Thresholds()).severity is None
