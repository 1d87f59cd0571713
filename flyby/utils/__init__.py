"""Small utilities (GPU and memory telemetry)."""
