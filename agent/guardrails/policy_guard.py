"""A capability that puts every tool call through the run's `ToolPolicy` and audits the decision.

It is the outermost tool wrapper, so nothing (ledger, loop guard, the tool itself) runs for a call the
policy refuses. Every decision is appended to `tool_audit` (append-only in the database) with the
arguments redacted. Refusals go back to the model as structured failures and the run goes on; a
model that keeps repeating a refused call is stopped as a loop. Calls to tools the agent does not
have never reach the tool hooks (pydantic-ai answers them with a retry prompt), so they are audited
from the model response instead.

Each model response is screened as it arrives, before anything stores, replays or exports it (this hook
runs inside the model-request span, so the span records the screened response): a tool call's arguments
over the size limit are replaced, unread, by a stand-in and the call is refused; arguments carrying a
secret shape, as written or disguised (`tools.screen_args`), refuse the call; and every secret shape in
the response (tool arguments, text) is redacted. A refused call is never validated or sent. The
screening runs in a thread: a 5 MB argument must not stall the event loop and its lease heartbeat.

The final answer (the output tool) is held to the same size limit: over it, it is replaced by the
stand-in unread, refused with a structured error the model sees as a retried tool return
(`{"error": "arguments_too_large: ..."}`),
and audited; the same oversized answer a third time stops the run as a loop. Its secrets are redacted,
not refused (the report is redacted again when the run finishes).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import logfire
from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.capabilities.abstract import (
    RawToolArgs,
    ValidatedToolArgs,
    WrapToolExecuteHandler,
    WrapToolValidateHandler,
)
from pydantic_ai.exceptions import ApprovalRequired, ModelRetry, SkipToolValidation
from pydantic_ai.messages import ModelResponse, ModelResponsePart, TextPart, ThinkingPart, ToolCallPart
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.output import OutputContext
from pydantic_ai.tools import ToolDefinition
from pydantic_core import to_jsonable_python

from agent.deps import ResearchDeps
from budgets import BudgetExceeded, call_key
from tools import (
    ArgsRefusal,
    PolicyDecision,
    ToolPolicy,
    args_size,
    omitted_args,
    redact_args,
    redact_secrets,
    screen_args,
    screen_size,
)
from tools.secrets import redact_text

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
    screened: dict[str, ArgsRefusal | None] = field(default_factory=dict)
    """Tool calls (final answers included) whose arguments were screened, by tool call id: the refusal, or None
    when they may go on."""

    async def after_model_request(
        self, ctx: RunContext[ResearchDeps], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        params = request_context.model_request_parameters
        outputs = {t.name for t in params.output_tools}
        known = {t.name for t in params.function_tools} | outputs
        response, screened, redacted = await asyncio.to_thread(self._screen_response, response, outputs)
        self.screened.update(screened)
        if redacted:
            logfire.info("model response redacted: {redactions}", redactions=dict(redacted), run_id=ctx.deps.run_id)
        for part in response.parts:
            if isinstance(part, ToolCallPart) and part.tool_name not in known:
                await self._audit(
                    ctx,
                    part,
                    PolicyDecision(decision="deny", reason=f"unknown tool {part.tool_name!r}: not registered, not run"),
                )
        return response

    async def before_output_validate(
        self, ctx: RunContext[ResearchDeps], *, output_context: OutputContext, output: Any
    ) -> Any:
        """A final answer over the size limit is refused before it is validated: the model gets a structured
        error (`arguments_too_large`) as a retry prompt, the refusal is audited, and a model that keeps sending
        the same oversized answer is stopped as a loop."""
        call = output_context.tool_call
        if call is None or ctx.partial_output:  # text output (this agent takes none), or a streamed partial
            return output
        if call.tool_call_id not in self.screened:  # a call from a committed response (a resumed run)
            self.screened[call.tool_call_id] = await asyncio.to_thread(self._screen_output, call.args)
        refused = self.screened[call.tool_call_id]
        if refused is None:
            return output
        await self._audit(ctx, call, PolicyDecision(decision="deny", reason=f"final answer refused: {refused.reason}"))
        self._count_refusal(call)
        # The model gets it as a retried tool return, `{"error": "arguments_too_large: Refused by ..."}`.
        result = refused.as_result()
        limit = self.policy.max_args_bytes
        raise ModelRetry(f"{result['error']}: {result['message']} Give the final answer again, under {limit:,} bytes.")

    async def wrap_tool_validate(
        self,
        ctx: RunContext[ResearchDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: RawToolArgs,
        handler: WrapToolValidateHandler,
    ) -> ValidatedToolArgs:
        """A call refused on its arguments skips validation (the refusal is returned when it executes)."""
        if tool_def.kind == "output":
            return await handler(args)
        if call.tool_call_id not in self.screened:  # a call from a committed response (a resumed run)
            limit = self.policy.max_args_bytes
            self.screened[call.tool_call_id] = await asyncio.to_thread(screen_args, args, max_bytes=limit)
        if self.screened[call.tool_call_id] is not None:
            raise SkipToolValidation({})
        return await handler(args)

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
        if (refused := self.screened.get(call.tool_call_id)) is not None:
            await self._audit(ctx, call, PolicyDecision(decision="deny", reason=refused.reason))
            self._count_refusal(call)
            return refused.as_result()
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

    def _screen_response(
        self, response: ModelResponse, outputs: set[str]
    ) -> tuple[ModelResponse, dict[str, ArgsRefusal | None], Counter[str]]:
        """The response with oversized arguments replaced and secrets redacted, each tool call's verdict, and
        what was redacted. CPU-bound on a hostile response (run it in a thread): sizes are taken first."""
        screened: dict[str, ArgsRefusal | None] = {}
        redacted: Counter[str] = Counter()
        parts: list[ModelResponsePart] = []
        for part in response.parts:
            if isinstance(part, ToolCallPart):
                part = self._screen_call(part, output=part.tool_name in outputs, screened=screened, redacted=redacted)
            elif isinstance(part, TextPart) or (isinstance(part, ThinkingPart) and part.signature is None):
                # (signed thinking is replayed to its provider verbatim, so it is left as it is)
                content, found = redact_text(part.content, category="secret")
                redacted.update(found)
                part = dataclasses.replace(part, content=content) if found else part
            parts.append(part)
        if all(new is old for new, old in zip(parts, response.parts, strict=True)):
            return response, screened, redacted
        return dataclasses.replace(response, parts=parts), screened, redacted

    def _screen_call(
        self,
        call: ToolCallPart,
        *,
        output: bool,
        screened: dict[str, ArgsRefusal | None],
        redacted: Counter[str],
    ) -> ToolCallPart:
        limit = self.policy.max_args_bytes
        refusal = self._screen_output(call.args) if output else screen_args(call.args, max_bytes=limit)
        screened[call.tool_call_id] = refusal
        if refusal is not None and args_size(call.args) > limit:  # never read: not kept, not replayed
            return dataclasses.replace(call, args=omitted_args(args_size(call.args), limit))
        args, found = redact_secrets(call.args)
        redacted.update(found)
        return call if args is None else dataclasses.replace(call, args=args)

    def _screen_output(self, args: str | dict[str, Any] | None) -> ArgsRefusal | None:
        """A final answer is held to the size limit only (its secrets are redacted, not refused)."""
        return screen_size(args, max_bytes=self.policy.max_args_bytes)

    @staticmethod
    def _redacted_args(call: ToolCallPart) -> Any:
        try:
            raw = call.args_as_dict()
        except Exception:  # unparseable arguments from the model: keep them as text
            raw = {"_raw": str(call.args)}
        return redact_args(to_jsonable_python(raw, fallback=str))

    async def _audit(self, ctx: RunContext[ResearchDeps], call: ToolCallPart, decision: PolicyDecision) -> None:
        deps = ctx.deps
        args = await asyncio.to_thread(self._redacted_args, call)  # up to the size limit: CPU work
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
