"""The Dagster layer: wires the document core into assets, checks, sensors and resources."""
