"""The exceptions `agent` raises, each with a message that says what to do next.

`ResearchAgentError` is the project's one exception root (`tools.errors`); it is re-exported here.
"""

from __future__ import annotations

from tools.errors import ResearchAgentError

__all__ = [
    "ApprovalError",
    "ConfigurationError",
    "DatabaseError",
    "InvalidQuestionError",
    "LeaseLostError",
    "QuestionRefusedError",
    "ResearchAgentError",
    "RunNotFoundError",
    "RunRefusedError",
]


class ConfigurationError(ResearchAgentError):
    """Settings or arguments that cannot work (unknown model, missing key, invalid setting, unusable data dir).

    Each problem is one line naming the environment variable or argument and the form it expects;
    `problems` keeps them apart, `str()` joins them with newlines. The CLI exits 2 on it.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems: tuple[str, ...] = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)


class DatabaseError(ResearchAgentError):
    """PostgreSQL could not be reached or migrated."""


class RunNotFoundError(ResearchAgentError):
    """No run has that id (or id prefix)."""


class LeaseLostError(ResearchAgentError):
    """Another worker now owns the run; this worker must stop touching it."""


class InvalidQuestionError(ResearchAgentError):
    """The question is empty, too long or not text."""


class RunRefusedError(ResearchAgentError):
    """New runs are not accepted right now: the kill switch is on or today's spend cap is reached."""


class QuestionRefusedError(InvalidQuestionError):
    """The question was screened as a prompt-injection attempt and the policy refuses such questions."""


class ApprovalError(ResearchAgentError):
    """An approval request that does not exist, or can no longer be decided."""
