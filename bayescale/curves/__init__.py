"""Loss-curve laws: the curve reader, the annealing and multi-power laws, their scores,
plots and CLI."""
