"""Negative-surge detection: pure statistics, no I/O.

For one topic (or overall) and one hour, the question is whether the hour's
negative count is too high for the topic's recent negative *share*. Testing
the share rather than the count makes the test indifferent to volume swings
(nights, weekends, a feed going quiet): the daily volume pattern changes n,
not the expected share.

Method: one-sided binomial test. Under "nothing changed", the hour's
negatives ``k`` out of ``n`` stories follow Binomial(n, p0), where ``p0`` is
the baseline share over the previous ``baseline_days`` (the current hour
excluded), smoothed toward the overall share with a Beta prior of
``prior_strength`` pseudo-stories so that a thin baseline cannot produce a
p0 of 0. The p-value ``P(X >= k)`` is exact at low volume, where normal
approximations fail. An alert also needs a minimum volume, a minimum number
of negatives and an effect size (share at least ``min_ratio`` x baseline),
so tiny but "significant" wobbles on busy topics do not page anyone.

Each hour is judged alone and pooled with the hours before it (the last 2,
3, ... ``pool_hours`` hours, stopping at an hour with no stories): a surge too
small to prove in one hour at low volume is often provable over a few, and
the first hour of a surge is still caught alone when it is strong. A pooled
look only counts while the current hour is itself elevated, so it never
raises or upgrades an alert for a surge that has ended. For resolving, the
views work the other way: a live alert is resolved only when the hour and
the two-hour pool are both back near the baseline (hysteresis), so a thin
hour mid-surge does not close and reopen it, yet an ended surge closes within
two calm hours. The baseline excludes all pooled hours.
``python -m bench.alerts --sweep`` shows how ``pool_hours`` = 4 and ``warning_p`` =
0.001 were chosen: against 2 hours at 0.002 they raise recall at every volume
and cut false alerts, for about 0.15 h more mean delay.

Cold start: ``min_history_stories`` must be in the whole stream's baseline
before anything is judged; the very first hours of a history are not compared
with nothing.

The slow view (``judge_regime``, alert kind ``regime``) answers another question:
has the daily negative share risen and stayed up, against a long baseline
(``regime_baseline_days``, 90)? An hourly test with a 7-day baseline follows a
crisis that builds over weeks and never fires. Days vary more than binomial
noise (news cycles), so the binomial standard error of the recent share is
widened by the baseline's Pearson dispersion (its days' squared deviations from
the baseline share, each in units of its own binomial variance, so a quiet
Sunday may wander more than a busy Tuesday; never below 1):
z = (recent share - baseline share) / sqrt(dispersion x p0 (1 - p0) / recent stories). It needs ``regime_min_baseline_days``
days with stories (no cold start), z >= ``regime_z`` and a share at least
``regime_ratio`` x baseline; it stays open until the recent share is back under
``regime_resolve_ratio`` x baseline, and the baseline is frozen at the alert's
start so that the crisis does not become its own baseline.

Severity: ``critical`` when p < ``critical_p`` and share >= ``critical_ratio``
x baseline, else ``warning`` when p < ``warning_p`` and share >=
``min_ratio`` x baseline. A live alert is resolved once the share is back
under ``resolve_ratio`` x baseline in the hour and in the two-hour pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import binom, norm

from pipeline.config import Thresholds


@dataclass(frozen=True)
class Verdict:
    severity: str | None  # None, 'warning' or 'critical'
    observed_share: float
    baseline_share: float
    p_value: float
    score: float  # z-score of k against n * p0
    ratio: float
    elevated: bool  # share above resolve_ratio x baseline


def baseline_share(base_negatives: int, base_stories: int, prior_share: float, prior_strength: float) -> float:
    """Beta-smoothed baseline share: (neg + a) / (n + a + b) with a + b = prior_strength."""
    prior_share = min(max(prior_share, 1e-3), 0.999)
    return (base_negatives + prior_strength * prior_share) / (base_stories + prior_strength)


def judge(
    stories: int,
    negatives: int,
    base_stories: int,
    base_negatives: int,
    prior_share: float,
    th: Thresholds = Thresholds(),
) -> Verdict:
    """Verdict for one hour of one topic against its baseline."""
    if negatives < 0 or negatives > stories:
        raise ValueError(f"negatives ({negatives}) must be within 0..stories ({stories})")
    p0 = baseline_share(base_negatives, base_stories, prior_share, th.prior_strength)
    share = negatives / stories if stories else 0.0
    ratio = share / p0 if p0 > 0 else math.inf
    p_value = float(binom.sf(negatives - 1, stories, p0)) if stories else 1.0
    sd = math.sqrt(stories * p0 * (1 - p0)) if stories else 0.0
    score = (negatives - stories * p0) / sd if sd > 0 else 0.0
    severity = None
    if stories >= th.min_stories and negatives >= th.min_negatives:
        if p_value < th.critical_p and ratio >= th.critical_ratio:
            severity = "critical"
        elif p_value < th.warning_p and ratio >= th.min_ratio:
            severity = "warning"
    return Verdict(severity, share, p0, p_value, score, ratio, elevated=stories > 0 and ratio >= th.resolve_ratio)


def judge_recent(
    hour: tuple[int, int],
    previous: Sequence[tuple[int, int]],
    base: tuple[int, int],
    prior_share: float,
    th: Thresholds = Thresholds(),
) -> Verdict:
    """Judge an hour alone and pooled with the hours before it; the stronger verdict wins.

    ``hour`` and ``base`` are (stories, negatives); ``previous`` holds the
    (stories, negatives) of the hours before, most recent first (only the
    first ``pool_hours - 1`` are used); ``base`` must exclude all of them.
    """
    single = judge(hour[0], hour[1], base[0], base[1], prior_share, th)
    best, elevated = single, single.elevated
    rank = {None: 0, "warning": 1, "critical": 2}
    n, k = hour
    for span, (prev_n, prev_k) in enumerate(list(previous)[: max(0, th.pool_hours - 1)], start=2):
        if prev_n == 0:
            break  # pool only over contiguous hours with stories
        n, k = n + prev_n, k + prev_k
        pooled = judge(n, k, base[0], base[1], prior_share, th)
        if span == 2:
            # Hysteresis: a live alert stays open while the hour or the two-hour pool is
            # elevated, so one thin, calm-looking hour mid-surge does not resolve it. Longer
            # pools would keep an ended surge open for hours, so they do not count here.
            elevated = elevated or pooled.elevated
        # Pooling may strengthen the evidence for a surge that is still present,
        # never revive one whose current hour is back to normal.
        if single.elevated and rank[pooled.severity] > rank[best.severity]:
            best = pooled
    return Verdict(
        best.severity,
        single.observed_share,
        best.baseline_share,
        best.p_value,
        best.score,
        best.ratio,
        elevated=elevated,
    )


@dataclass(frozen=True)
class Transition:
    action: str  # 'open', 'update', 'resolve' or 'none'
    severity: str | None


def transition(live_alert: bool, verdict: Verdict) -> Transition:
    """One surge is one alert: open it, keep updating it while it lasts, resolve it when calm."""
    if verdict.severity:
        return Transition("update" if live_alert else "open", verdict.severity)
    if live_alert and not verdict.elevated:
        return Transition("resolve", None)
    if live_alert:
        return Transition("update", None)  # still elevated, no longer significant: keep it open
    return Transition("none", None)


@dataclass(frozen=True)
class RegimeVerdict:
    severity: str | None  # None, 'warning' or 'critical' (critical: z >= 2 x regime_z)
    observed_share: float
    baseline_share: float
    z: float
    p_value: float  # one-sided normal tail of z (what the alerts table stores beside it)
    ratio: float
    elevated: bool  # still above regime_resolve_ratio x baseline: a live alert stays open
    judged: bool  # False on a cold start (too few baseline days): nothing can be said


def judge_regime(
    recent: tuple[int, int], baseline_days: Sequence[tuple[int, int]], th: Thresholds = Thresholds()
) -> RegimeVerdict:
    """Is the recent (stories, negatives) share a sustained rise over the baseline's daily (stories, negatives)?"""
    n, k = recent
    days = [(dn, dk) for dn, dk in baseline_days if dn >= th.regime_min_day_stories]
    share = k / n if n else 0.0
    if len(days) < th.regime_min_baseline_days or n < th.regime_min_day_stories:
        return RegimeVerdict(None, share, 0.0, 0.0, 1.0, 0.0, elevated=True, judged=False)
    total_n, total_k = sum(d[0] for d in days), sum(d[1] for d in days)
    p0 = min(max(total_k / total_n, 1e-3), 0.999)
    # Pearson dispersion: how much more the baseline's days vary than binomial noise at their own volumes
    # (a quiet Sunday's share is allowed to wander more than a busy Tuesday's); never below 1
    phi = max(1.0, sum((dk - dn * p0) ** 2 / (dn * p0 * (1 - p0)) for dn, dk in days) / (len(days) - 1))
    se = math.sqrt(phi * p0 * (1 - p0) / n)
    z = (share - p0) / se if se > 0 else 0.0
    ratio = share / p0
    severity = None
    if z >= th.regime_z and ratio >= th.regime_ratio:
        severity = "critical" if z >= 2 * th.regime_z else "warning"
    p_value = float(norm.sf(z))
    return RegimeVerdict(severity, share, p0, z, p_value, ratio, elevated=ratio >= th.regime_resolve_ratio, judged=True)
