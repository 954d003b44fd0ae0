"""The entry points of `bl2 pretrain` and `bl2 distill`: build the command's Job (job.py) and train it
(loop.train). Code that needs more control (hooks, a cache decoded once for many students) uses those two
directly."""

from __future__ import annotations

from bl2.errors import require
from bl2.runs.sinks import require_installed


def pretrain(cfg, data_dir, out, resume: bool = False, overwrite: bool = False, device: str = "auto",
             hooks=()) -> dict:
    """`bl2 pretrain`: CE-only training on DATA's train split with random window offsets per epoch."""
    from bl2.distill.job import pretrain_job
    from bl2.distill.loop import train
    from bl2.distill.rundir import preflight

    preflight(out, resume, overwrite)  # a wrong --out fails before the data is loaded
    require_installed(cfg.report_to)  # a missing tracking package too
    return train(pretrain_job(cfg, str(data_dir)), str(out), resume, overwrite, device, hooks)


def distill(cfg, out, cache=None, teachers=None, data_dir=None, ensemble: str = "logit_mean",
            resume: bool = False, overwrite: bool = False, device: str = "auto",
            hooks=(), teacher_words=None, fresh_offsets: bool = False) -> dict:
    """`bl2 distill`: from a cache (teachers never loaded) or, as the online baseline, from live teachers.
    Same loop, same loss; only the target source differs. teacher_words: the teachers' training words (one
    count, or one per teacher) where their run.json cannot tell (the budget ledger). fresh_offsets: live teachers
    on pretraining's windows (a new random offset every epoch) instead of a cache's fixed ones."""
    from bl2.distill.job import cache_job, online_job
    from bl2.distill.loop import train
    from bl2.distill.rundir import preflight

    require((cache is None) != (teachers is None), "give either --cache or --teachers (not both)")
    require(not (fresh_offsets and cache is not None),
            "--fresh-offsets needs live teachers (--teachers): a cache holds fixed windows (see --offsets)")
    preflight(out, resume, overwrite)  # a wrong --out fails before a cache is decoded or a teacher loaded
    require_installed(cfg.report_to)
    data = None if data_dir is None else str(data_dir)
    if cache is not None:
        job = cache_job(cfg, cache, data, teacher_words)
    else:
        job = online_job(cfg, [str(t) for t in teachers], data, ensemble, device, teacher_words, fresh_offsets)
    return train(job, str(out), resume, overwrite, device, hooks)
