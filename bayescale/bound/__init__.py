"""Convex-bound laws: the run-table reader, the final-loss, size-horizon and whole-curve
laws, LR transfer recipes and CLI."""
