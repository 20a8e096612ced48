"""Fine-tuning tasks, one class per file behind `base.FinetuneTask`; `get(name)` by the
config's `finetune.task`."""

from __future__ import annotations

from .base import FinetuneTask
from .classification import SequenceClassification
from .ner import TokenClassification

TASKS: dict[str, FinetuneTask] = {t.name: t for t in (SequenceClassification(), TokenClassification())}


def get(name: str) -> FinetuneTask:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown fine-tuning task {name!r}; known: {sorted(TASKS)}") from None
