"""The core every capability builds on: schedules and their features, the convex bound's
maths, the fit contract and its sampler, noise models, diagnostics, interval summaries,
errors and shared I/O. Nothing here imports a capability (curves, sweep, bound)."""
