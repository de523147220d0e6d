"""Alerts (issue 15, point 2): rules over the fleet's recent runs and today's spend, fired once per breach.

`check_alerts` evaluates every rule now: the run rules over the runs created in `alert_window` (the figures
of `research-agent stats`, computed in SQL by `fleet_stats`), judged only once the window holds
`alert_min_runs` finished runs; the spend rules against `RESEARCH_AGENT_DAILY_CAP_USD` (judged only when a cap
is set). `research-agent alerts check` prints it and exits 1 on a breach.

`fire_alerts` turns a check into events. Each rule's last state is a row of `alert_state`
(migrations/0015_alerts.sql); the single conditional upsert that flips a rule to breached is the one that
writes its `alert.fired` event, in the same transaction, so any number of workers checking at once fire a
breach once. A rule that holds again re-arms. Spend rules are keyed by the UTC day and never re-armed: once
per day each. Every worker runs an `AlertMonitor` (each `alert_check_seconds`). The event goes to the
webhook outbox: `RESEARCH_AGENT_WEBHOOKS` hear it with every other event, `RESEARCH_AGENT_ALERT_WEBHOOKS`
hear only alerts. What each alert means and what to do: docs/runbook.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal

import asyncpg
from pydantic import BaseModel

from agent.durable.background import repeating
from agent.durable.store.outbox import enqueue_event
from agent.durable.store.retention import parse_age
from agent.durable.store.stats import Dollars, GroupStats, RunStats, fleet_stats
from agent.settings import Settings
from budgets import DailySpend, SpendToday

__all__ = ["RUN_RULES", "AlertCheck", "AlertMonitor", "RuleResult", "check_alerts", "evaluate", "fire_alerts"]

SPEND_STATE_DAYS: Final = 8
"""Spend alerts' per-day state rows older than this are deleted when a new day's spend alert fires."""


class RuleResult(BaseModel):
    """One rule, judged now: its figure, its threshold, and whether it holds."""

    rule: str
    description: str
    judged: bool
    """False when there was too little to judge: fewer finished runs than `alert_min_runs`, no daily cap."""
    breached: bool = False
    value: float | None = None
    threshold: float
    message: str
    """One line for people: `success_rate 0.82 < 0.90 (41 of 50 finished runs completed)`."""


class AlertCheck(BaseModel):
    """Every rule over one window; `breached` lists the rules that do not hold."""

    window_seconds: float
    window_start: datetime
    window_end: datetime
    runs: int
    finished_runs: int
    spend_day: date
    spent_usd: Dollars
    daily_cap_usd: Dollars | None
    results: list[RuleResult]

    @property
    def breached(self) -> list[RuleResult]:
        return [r for r in self.results if r.breached]


@dataclass(frozen=True, kw_only=True)
class _RunRule:
    """A threshold on one figure of `GroupStats` over the window's finished runs."""

    name: str
    description: str
    bound: Literal["min", "max"]
    threshold: Callable[[Settings], float]
    figure: Callable[[GroupStats], float | None]
    form: str
    """How the figure and threshold are printed: `.2f`, `.0f`..."""


RUN_RULES: Final[tuple[_RunRule, ...]] = (
    _RunRule(
        name="success_rate",
        description="completed / finished runs",
        bound="min",
        threshold=lambda s: s.alert_min_success_rate,
        figure=lambda g: g.completion_rate,
        form=".2f",
    ),
    _RunRule(
        name="steps_per_run",
        description="model turns per finished run, on average",
        bound="max",
        threshold=lambda s: s.alert_max_steps_per_run,
        figure=lambda g: g.turns_avg,
        form=".1f",
    ),
    _RunRule(
        name="p99_duration",
        description="p99 run duration, seconds",
        bound="max",
        threshold=lambda s: s.alert_max_p99_duration_seconds,
        figure=lambda g: g.duration_seconds.p99,
        form=".1f",
    ),
    _RunRule(
        name="tokens_per_run",
        description="tokens per finished run, on average",
        bound="max",
        threshold=lambda s: s.alert_max_tokens_per_run,
        figure=lambda g: g.tokens_per_run,
        form=",.0f",
    ),
    _RunRule(
        name="cost_per_run",
        description="dollars per finished run, on average",
        bound="max",
        threshold=lambda s: float(s.alert_max_cost_per_run_usd),
        figure=lambda g: None if g.cost_per_run_usd is None else float(g.cost_per_run_usd),
        form=".4f",
    ),
    _RunRule(
        name="tool_error_rate",
        description="tool errors / tool calls",
        bound="max",
        threshold=lambda s: s.alert_max_tool_error_rate,
        figure=lambda g: g.tool_error_rate,
        form=".3f",
    ),
    _RunRule(
        name="approval_rate",
        description="runs that asked a human / runs",
        bound="max",
        threshold=lambda s: s.alert_max_approval_rate,
        figure=lambda g: g.approvals.rate,
        form=".2f",
    ),
)


def spend_rule(fraction: float) -> str:
    """`spend_50` for half the daily cap."""
    return f"spend_{round(fraction * 100)}"


def evaluate(stats: GroupStats, spend: SpendToday, *, settings: Settings) -> list[RuleResult]:
    """Every rule against the window's figures and today's spend (pure: no database)."""
    results = [_judge_run_rule(rule, stats, settings=settings) for rule in RUN_RULES]
    for fraction in settings.alert_spend_fractions:
        results.append(_judge_spend(fraction, spend))
    return results


def _judge_run_rule(rule: _RunRule, stats: GroupStats, *, settings: Settings) -> RuleResult:
    threshold = rule.threshold(settings)
    value = rule.figure(stats)

    def result(*, judged: bool, message: str, breached: bool = False) -> RuleResult:
        return RuleResult(
            rule=rule.name,
            description=rule.description,
            judged=judged,
            breached=breached,
            value=value,
            threshold=threshold,
            message=message,
        )

    if stats.finished < settings.alert_min_runs:
        return result(
            judged=False,
            message=f"{rule.name}: not judged, {stats.finished} finished runs (needs {settings.alert_min_runs})",
        )
    if value is None:
        return result(judged=False, message=f"{rule.name}: not judged, nothing measured")
    breached = value < threshold if rule.bound == "min" else value > threshold
    sign = ("<" if rule.bound == "min" else ">") if breached else ("≥" if rule.bound == "min" else "≤")
    message = (
        f"{rule.name} {value:{rule.form}} {sign} {threshold:{rule.form}} "
        f"({rule.description}, {stats.finished} finished runs)"
    )
    return result(judged=True, breached=breached, message=message)


def _judge_spend(fraction: float, spend: SpendToday) -> RuleResult:
    name = spend_rule(fraction)
    description = f"today's spend / {fraction:.0%} of the daily cap"
    if spend.cap_usd is None:
        message = f"{name}: not judged, no daily cap (RESEARCH_AGENT_DAILY_CAP_USD)"
        return RuleResult(rule=name, description=description, judged=False, threshold=fraction, message=message)
    used = float(spend.spent_usd / spend.cap_usd)
    breached = used >= fraction
    message = (
        f"{name}: ${spend.spent_usd:.4f} spent on {spend.day} is {used:.0%} of the ${spend.cap_usd} daily cap "
        f"({'reached' if breached else 'below'} {fraction:.0%})"
    )
    return RuleResult(
        rule=name,
        description=description,
        judged=True,
        breached=breached,
        value=used,
        threshold=fraction,
        message=message,
    )


async def check_alerts(pool: asyncpg.Pool, settings: Settings, *, since: timedelta | None = None) -> AlertCheck:
    """Every rule, now, over the runs created in the last `since` (default: `alert_window`)."""
    window = since or parse_age(settings.alert_window)
    stats: RunStats = await fleet_stats(pool, since=window, by=None)
    spend = await DailySpend(pool, cap_usd=settings.daily_cap_usd).today()
    return AlertCheck(
        window_seconds=window.total_seconds(),
        window_start=stats.window_start,
        window_end=stats.window_end,
        runs=stats.total.runs,
        finished_runs=stats.total.finished,
        spend_day=spend.day,
        spent_usd=spend.spent_usd,
        daily_cap_usd=spend.cap_usd,
        results=evaluate(stats.total, spend, settings=settings),
    )


async def fire_alerts(pool: asyncpg.Pool, check: AlertCheck, *, fired_by: str) -> list[RuleResult]:
    """Record each judged rule's state; for each that has just started to breach, write one `alert.fired`
    event in the same transaction. Returns the rules fired by this call (none when another worker won)."""
    fired: list[RuleResult] = []
    for result in check.results:
        if not result.judged:
            continue
        spend = result.rule.startswith("spend_")
        key = f"{result.rule}:{check.spend_day.isoformat()}" if spend else result.rule
        async with pool.acquire() as conn, conn.transaction():
            if not result.breached:
                if not spend:  # holding again re-arms it; a spend alert stays fired for its day
                    await conn.execute(
                        "UPDATE alert_state SET breached = false, value = $2, changed_at = now()"
                        " WHERE rule = $1 AND breached",
                        key,
                        result.value,
                    )
                continue
            flipped = await conn.fetchval(
                """
                INSERT INTO alert_state (rule, breached, value, threshold, fired_at, fired_by)
                VALUES ($1, true, $2, $3, now(), $4)
                ON CONFLICT (rule) DO UPDATE SET breached = true, value = EXCLUDED.value,
                    threshold = EXCLUDED.threshold, changed_at = now(), fired_at = now(), fired_by = EXCLUDED.fired_by
                WHERE NOT alert_state.breached
                RETURNING rule
                """,
                key,
                result.value,
                result.threshold,
                fired_by,
            )
            if flipped is None:
                continue  # still breached since it fired (here or on another worker): once per breach
            await enqueue_event(
                conn,
                "alert.fired",
                {
                    "rule": result.rule,
                    "message": result.message,
                    "value": result.value,
                    "threshold": result.threshold,
                    "window_seconds": check.window_seconds,
                    "runs": check.runs,
                    "finished_runs": check.finished_runs,
                    "spend_day": check.spend_day.isoformat() if spend else None,
                    "fired_by": fired_by,
                },
            )
            if spend:  # a new day's row: the days past their keeping go (not a write on every check)
                await conn.execute(
                    "DELETE FROM alert_state WHERE rule LIKE 'spend\\_%:%'"
                    " AND changed_at < now() - make_interval(days => $1)",
                    SPEND_STATE_DAYS,
                )
            fired.append(result)
    return fired


class AlertMonitor:
    """A worker's periodic alert check: every `alert_check_seconds`, check and fire (logged as a warning)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, worker_id: str) -> None:
        self.pool = pool
        self.settings = settings
        self.worker_id = worker_id
        self._background = repeating(
            self.check_once,
            every_seconds=settings.alert_check_seconds,
            name="alert monitor",
            failure="alert check failed",
        )

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def check_once(self) -> list[RuleResult]:
        """One check; the rules this worker fired."""
        import logfire

        fired = await fire_alerts(self.pool, await check_alerts(self.pool, self.settings), fired_by=self.worker_id)
        for result in fired:
            logfire.warn("alert fired: {message}", message=result.message, rule=result.rule, worker_id=self.worker_id)
        return fired
