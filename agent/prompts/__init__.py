"""Prompts live in `agent/prompts/*.md`; a run records the content hash of the prompt it used."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, kw_only=True)
class Prompt:
    name: str
    text: str

    @property
    def version(self) -> str:
        """`name@sha256-prefix`: changes whenever the prompt's content changes."""
        digest = hashlib.sha256(self.text.encode()).hexdigest()[:12]
        return f"{self.name}@{digest}"


@cache
def load_prompt(name: str) -> Prompt:
    text = resources.files("agent.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    return Prompt(name=name, text=text.strip())


def research_prompt() -> Prompt:
    return load_prompt("research")
