"""The document core: plain Python that never imports Dagster."""
