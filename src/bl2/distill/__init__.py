"""Training: the loss functions, the one training loop (pretraining = CE only; distillation from a cache or
from live teachers), window sources, checkpoints and run dirs."""
