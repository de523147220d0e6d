"""A capability that puts every tool call through the run's `ToolPolicy` and audits the decision.

It is the outermost tool wrapper, so nothing (ledger, loop guard, the tool itself) runs for a call the
policy refuses. Every decision is appended to `tool_audit` (append-only in the database) with the
arguments redacted. Refusals go back to the model as structured failures and the run goes on; a
model that keeps repeating a refused call is stopped as a loop. Calls to tools the agent does not
have never reach the tool hooks (pydantic-ai answers them with a retry prompt), so they are audited
from the model response instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import logfire
from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.capabilities.abstract import ValidatedToolArgs, WrapToolExecuteHandler
from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import ToolDefinition
from pydantic_core import to_jsonable_python

from agent.deps import ResearchDeps
from budgets import BudgetExceeded, call_key
from tools import PolicyDecision, ToolPolicy, redact_args

DENIED = "denied_by_policy"
MAX_SAME_REFUSALS = 2
"""A call refused this many times is a loop: the next identical attempt stops the run."""


@dataclass
class PolicyGuard(AbstractCapability[ResearchDeps]):
    policy: ToolPolicy
    refused: frozenset[str] = frozenset()
    """Call keys a human rejected (or let expire) earlier in this run: asked again, they are denied."""
    refusals: dict[str, int] = field(default_factory=dict)
    """Refused calls in this execution of the run, by call key."""

    async def after_model_request(
        self, ctx: RunContext[ResearchDeps], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        params = request_context.model_request_parameters
        known = {t.name for t in params.function_tools} | {t.name for t in params.output_tools}
        for part in response.parts:
            if isinstance(part, ToolCallPart) and part.tool_name not in known:
                await self._audit(
                    ctx,
                    part,
                    PolicyDecision(decision="deny", reason=f"unknown tool {part.tool_name!r}: not registered, not run"),
                )
        return response

    async def wrap_tool_execute(
        self,
        ctx: RunContext[ResearchDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        if tool_def.kind == "output":  # the final report is not a tool with effects
            return await handler(args)
        decision = self.policy.decide(call.tool_name, call.args_as_dict())
        if decision.decision == "require_approval" and ctx.tool_call_approved:
            decision = PolicyDecision(decision="allow", reason=f"approved by a human ({decision.reason})")
        elif decision.decision == "require_approval" and call_key(call.tool_name, call.args_as_dict()) in self.refused:
            decision = PolicyDecision(decision="deny", reason="a human already refused this call in this run")
        await self._audit(ctx, call, decision)
        match decision.decision:
            case "deny":
                self._count_refusal(call)
                return {"ok": False, "error": DENIED, "message": f"Refused by the tool policy: {decision.reason}."}
            case "require_approval":  # pydantic-ai defers the call; the runner parks the run for a human
                raise ApprovalRequired(metadata={"reason": decision.reason, "args": self._redacted_args(call)})
            case "allow":
                return await self._run_allowed(ctx, call, args, handler)

    async def _run_allowed(
        self,
        ctx: RunContext[ResearchDeps],
        call: ToolCallPart,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        seconds = self.policy.timeout_for(call.tool_name)
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                result = await handler(args)
        except TimeoutError:
            if not deadline.expired():
                raise
            await self._audit(
                ctx, call, PolicyDecision(decision="allow", reason=f"allowed, but timed out after {seconds:g}s")
            )
            return {"ok": False, "error": "timeout", "message": f"{call.tool_name} took longer than {seconds:g}s."}
        except BudgetExceeded as stop:  # an inner guard stopped the run (a loop, a per-tool cap)
            await self._audit(ctx, call, PolicyDecision(decision="deny", reason=f"run stopped ({stop.reason}): {stop}"))
            raise
        data = to_jsonable_python(result, fallback=str)
        if isinstance(data, dict) and data.get("error") == "blocked_url":  # the SSRF layer refused it
            await self._audit(
                ctx, call, PolicyDecision(decision="deny", reason=f"refused by the fetch layer: {data.get('message')}")
            )
        return result

    def _count_refusal(self, call: ToolCallPart) -> None:
        key = call_key(call.tool_name, call.args_as_dict())
        seen = self.refusals.get(key, 0)
        self.refusals[key] = seen + 1
        if seen >= MAX_SAME_REFUSALS:
            raise BudgetExceeded(
                "loop", f"loop detected: {call.tool_name} refused {seen + 1} times with the same arguments"
            )

    @staticmethod
    def _redacted_args(call: ToolCallPart) -> Any:
        try:
            raw = call.args_as_dict()
        except Exception:  # unparseable arguments from the model: keep them as text
            raw = {"_raw": str(call.args)}
        return redact_args(to_jsonable_python(raw, fallback=str))

    async def _audit(self, ctx: RunContext[ResearchDeps], call: ToolCallPart, decision: PolicyDecision) -> None:
        deps = ctx.deps
        args = self._redacted_args(call)
        logfire.info(
            "tool policy {decision}: {tool}",
            decision=decision.decision,
            tool=call.tool_name,
            reason=decision.reason,
            run_id=deps.run_id,
        )
        await deps.store.audit(
            deps.run_id, tool=call.tool_name, args=args, decision=decision.decision, reason=decision.reason
        )
