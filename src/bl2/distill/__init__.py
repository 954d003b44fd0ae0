"""The training engine (the package keeps the name `distill` of the project's design card: pretraining is the
alpha = 1, no-teacher case of the same loop). `job` builds a Job (identity, window source, objective,
validation windows, tokenizer, config) for pretraining, distillation from a cache or from live teachers;
`loop.train` runs any Job with optional hooks; `objective`/`fused`/`losses` are the loss; `sources` the
windows of pretraining and online distillation (a cache's are bl2.cache.loader's); `checkpoint` and `rundir`
what a run writes; `words` its words seen; `run` the entry points of the CLI commands."""
