"""Offline by default: a deterministic extractive research model, its retrieval policy, and its critic.

With no API key the agent still researches: `OfflineResearchModel` plans, searches the local corpus,
fetches pages and answers with exact quotes; `OfflineCriticModel` grades reports the same way the
eval suite's offline critic does (`grade_answer`).
"""

from agent.offline.critic import Grade, OfflineCriticModel, grade_answer, offline_critique
from agent.offline.model import OfflineResearchModel, offline_model

__all__ = ["Grade", "OfflineCriticModel", "OfflineResearchModel", "grade_answer", "offline_critique", "offline_model"]
