"""Review: the critic agent, its rubric (one file, shared with the eval suite), and the revision loop."""

from agent.review.critic import Critique, Review, RevisionOutcome, critic_agent, critic_prompt, revision_request

__all__ = ["Critique", "Review", "RevisionOutcome", "critic_agent", "critic_prompt", "revision_request"]
