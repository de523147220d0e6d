"""Review: the critic agent, its rubric (one file, shared with the eval suite), and the revision loop."""

from agent.review.critic import (
    Critique,
    Review,
    RevisionOutcome,
    critic_agent,
    critic_prompt,
    critic_rubric,
    revision_request,
)
from agent.review.grading import Critic
from agent.review.loop import ReviewLoop

__all__ = [
    "Critic",
    "Critique",
    "Review",
    "ReviewLoop",
    "RevisionOutcome",
    "critic_agent",
    "critic_prompt",
    "critic_rubric",
    "revision_request",
]
