"""Analysis: frames in, frames out (summaries, plateaus, scaling fits, weight diagnostics)."""
