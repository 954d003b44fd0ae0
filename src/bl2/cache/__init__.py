"""Teacher-logit caches (format v1, DESIGN §5): `schema` (the contract), `writer` (`bl2 cache-logits`),
`reader` (`CacheReader`, for the distillation loader), `info`, `verify` and `compare` (the `bl2 cache` tools)."""
