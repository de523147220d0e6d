"""Loading the YAML datasets (with our evaluators registered) and writing their JSON schemas."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic_core import to_json
from pydantic_evals import Dataset

from evals._evaluators import CUSTOM_EVALUATORS
from evals._types import CaseMetadata, EvalInputs, EvalOutput

__all__ = [
    "SCHEMA_FILE",
    "ResearchDataset",
    "dataset_version",
    "default_datasets_dir",
    "load_dataset",
    "schema_text",
    "write_schema",
]

ResearchDataset = Dataset[EvalInputs, EvalOutput, CaseMetadata]


def default_datasets_dir() -> Path:
    """`datasets/` of this checkout (editable installs), else of the current directory."""
    here = Path(__file__).resolve().parent.parent / "datasets"
    return here if here.is_dir() else Path.cwd() / "datasets"


def load_dataset(path: Path) -> ResearchDataset:
    """Validate and load a dataset; unknown evaluators or fields are errors, not silently ignored."""
    return ResearchDataset.from_file(path, custom_evaluator_types=CUSTOM_EVALUATORS)


def dataset_version(path: Path) -> str:
    """The first 12 hex digits of the dataset file's SHA-256: equal versions mean the same cases."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


SCHEMA_FILE = "research_dataset_schema.json"
"""One schema for every dataset: they share inputs, metadata and evaluators."""


def schema_text() -> str:
    schema = ResearchDataset.model_json_schema_with_evaluators(CUSTOM_EVALUATORS)
    return to_json(schema, indent=2).decode() + "\n"


def write_schema(directory: Path) -> Path:
    """(Re)write the JSON schema the YAMLs' `# yaml-language-server: $schema=` line points at."""
    target = directory / SCHEMA_FILE
    target.write_text(schema_text(), encoding="utf-8")
    return target
