"""One law per module: numpy mean function, PyMC model, derived quantities."""
from bayescale.laws import (  # noqa: F401
    annealing,
    bound_2d,
    bound_curve,
    bound_final,
    chinchilla,
    multipower,
    surface,
)
