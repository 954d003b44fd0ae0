"""Teacher-logit caches (format v1, DESIGN §5): `schema` (the contract), `writer` (`bl2 cache-logits`),
`targets` (logits -> stored targets), `store` (output state, shard writer), `reader` (`CacheReader`), and the
`bl2 cache` tools `info`, `verify` (+ `recompute`, sharing `checks`) and `compare`."""
