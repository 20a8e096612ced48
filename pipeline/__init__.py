"""babelforge library: every stage of the pipeline, engine-agnostic (no Prefect import)."""
