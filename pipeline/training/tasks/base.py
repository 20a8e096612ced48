"""What a fine-tuning task is: one class per task, behind this interface.

`finetune` (training), `evaluation` (test report), `register` (MLflow metrics, model card) and
the CLI dispatch through it, so adding a task means adding one file here and one entry in
`TASKS` (`__init__.py`), not a branch in six modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pyarrow as pa
import torch


class FinetuneTask(ABC):
    name: str  # the config's `finetune.task`
    key: str  # its section in eval/report.json and its MLflow metric prefix
    title: str  # what the model card calls it
    pipeline_tag: str  # Hugging Face pipeline tag of the model card
    dev_metric: str  # what dev_score measures, for the training log
    gate_metric: str  # the per-language test metric the promotion gate compares
    peft_task_type: str  # peft.TaskType member name

    # --- data -------------------------------------------------------------------------------
    @abstractmethod
    def read(self, uri: str, languages: list[str] | None = None) -> pa.Table:
        """Labelled examples (path, glob or URI) with a `lang` column; a bad row is an error
        naming file and line."""

    @abstractmethod
    def labels(self, train: pa.Table) -> list[str]:
        """The label set of the model head, sorted."""

    # --- model and training -----------------------------------------------------------------
    @abstractmethod
    def auto_model(self):
        """The transformers Auto class of the model with this task's head."""

    @abstractmethod
    def example_losses(self, model, tokenizer, batch: dict, label2id: dict, max_length: int,
                       device) -> torch.Tensor:
        """Loss per example of a training batch (weighted by language outside)."""

    @abstractmethod
    def dev_score(self, model, tokenizer, dev: pa.Table, label2id: dict, max_length: int, device) -> float:
        """The early-stopping score on the dev set (higher is better)."""

    # --- evaluation and reporting -----------------------------------------------------------
    @abstractmethod
    def evaluate(self, model_dir: str, test_path: str, max_length: int,
                 languages: list[str] | None = None) -> dict:
        """The test report: {"labels", "languages": {lang: metrics}, "overall": {...}}."""

    @abstractmethod
    def language_line(self, lang: str, m: dict) -> str:
        """One console line for a language's test metrics."""

    @abstractmethod
    def table(self, report: dict) -> tuple[list[str], dict[str, list], list[str]]:
        """Markdown columns, {lang: cells}, and the row of overall figures (or [])."""

    @abstractmethod
    def metrics(self, report: dict) -> dict[str, float]:
        """MLflow metrics, per language and overall."""

    @abstractmethod
    def card_metrics(self, m: dict) -> list[dict]:
        """One language's results in a model card's model-index (huggingface_hub EvalResult terms)."""

    @abstractmethod
    def summary(self, report: dict) -> str:
        """One line for the registered model version's description."""

    chart_metrics: dict[str, str] = {}  # chart series label -> per-language metric key
    baseline_metric: str | None = None  # per-language baseline drawn on the chart

    def chart(self, report: dict) -> tuple[dict[str, dict[str, float]], dict[str, float] | None]:
        """The per-language series of the task's chart, and its baseline (or None)."""
        langs = report.get("languages", {})
        series = {label: {lang: m[key] for lang, m in langs.items() if key in m}
                  for label, key in self.chart_metrics.items()}
        base = self.baseline_metric
        return series, ({lang: m[base] for lang, m in langs.items() if base in m} if base else None)

    def model_kwargs(self, label2id: dict) -> dict:
        return {"num_labels": len(label2id), "label2id": label2id, "id2label": {v: k for k, v in label2id.items()}}


def logits(model, enc, device):
    return model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
