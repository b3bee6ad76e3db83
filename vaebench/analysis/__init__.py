"""Analysis: frames in, frames out (summaries, convergence, scaling fits, contrasts, step-time ratios, claims)."""
