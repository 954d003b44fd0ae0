"""`bl2 sweep`: the worker (`worker`), the search space (`space`), status and confirm (`results`)."""
