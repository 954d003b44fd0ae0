"""bl2: BabyLlama-2 style ensemble distillation with cached (Zarr) teacher soft targets."""
__version__ = "0.1.0"
