"""The Phase 4 pipeline: train fast, evaluate under the full flight stack, record the video, report."""
