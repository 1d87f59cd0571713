"""Training configuration and (later) training/evaluation pipelines."""
