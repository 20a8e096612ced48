"""Flow: train a fastText language-ID model for the languages you need, with its evaluation."""

from __future__ import annotations

from prefect import flow

from pipeline.config import LidTrainConfig
from tasks.langid import train_langid_task


@flow(name="train_langid", log_prints=True)
def train_langid(config: LidTrainConfig = LidTrainConfig(), out_dir: str = "runs/langid") -> dict:
    """Train on `config.inputs` (folders of `<label>.txt`, TSV, Parquet) and write the model,
    its per-language report and confusion chart to `out_dir`; point `corpus.langid.models`
    at `<out_dir>/model.ftz` to use it."""
    return train_langid_task(config, out_dir)
