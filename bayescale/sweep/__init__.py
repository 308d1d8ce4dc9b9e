"""LR × batch-size sweeps: the sweep reader, the loss-surface model (with the Chinchilla
loss law it uses), the convexity check, the Step Law baseline, plots and CLI."""
