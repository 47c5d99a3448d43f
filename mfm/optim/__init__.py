"""What wraps or constrains the real optimiser's step, for every method: the sharpness-aware
steps (SAM, ImbSAM) and MaxNorm's projection. Below the methods (which call the step) and
above the models (whose declared classifier MaxNorm constrains)."""
