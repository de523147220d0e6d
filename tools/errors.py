"""The one exception root of research-agent.

Every error the project raises (`agent`, `tools`, `budgets`, `evals`) derives from `ResearchAgentError`,
so a caller can catch everything of ours with one `except`. It lives in `tools`, the lowest layer, so
that `budgets` (which imports nothing from `agent`) can derive from it too; `agent`, `budgets` and
`evals` re-export it.
"""

from __future__ import annotations

__all__ = ["ResearchAgentError"]


class ResearchAgentError(Exception):
    """Base class for every error raised by research-agent."""
