"""`bl2 quickstart`: the whole pipeline end to end, by default on the built-in sample corpus (no download,
no GPU, a few minutes on 2 CPU cores), or on real data (BabyLM files) with --corpus/--dev/--blimp-dir.

prepare -> pretrain 2 teachers (seeds 0 and 1) -> cache-logits (topk) -> distill a student from the cache ->
eval loss (each teacher, their direct ensemble, the student) -> eval blimp (the same) -> one results table ->
`bl2 report` of it all in OUT/report/ (skipped, with a note, where matplotlib is not installed).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bl2.errors import require


@dataclass
class QuickstartConfig:
    """Sizes of the quickstart; the defaults fit the built-in corpus in about 5 minutes on 2 CPU cores."""

    out: Path = Path("bl2-quickstart")  # everything is written under this folder
    corpus: Path | None = None  # real data: folder of *.train files (default: the built-in sample corpus)
    dev: Path | None = None  # real data: folder of *.dev files
    blimp_dir: Path | None = None  # real data: BabyLM evaluation_data dir (blimp_filtered/, supplement_filtered/)
    preset: str = "tiny"  # model preset of teachers and student
    vocab_size: int = 2000  # the built-in corpus has ~1.9k word types: a word-level BPE
    sample_lines: int = 8_000  # lines of built-in training text (~50k words, ~75k tokens)
    epochs: int = 12  # teacher and student epochs: many passes over little data, the regime of the paper
    batch_size: int = 32  # sequences per step
    lr: float = 3e-3  # peak learning rate
    max_steps: int | None = None  # cap on steps per model (overrides epochs)
    k: int = 64  # cached top-k
    alpha: float = 0.5  # CE weight of the student
    temperature: float = 1.0  # distillation temperature
    kl_reduction: str = "sequence"  # the reference's
    eval_limit: int | None = None  # pairs per subtask in eval blimp (None = all)
    device: str = "auto"  # auto | cpu | cuda | mps
    overwrite: bool = False  # replace an existing --out
    extra: dict = field(default_factory=dict)  # further TrainConfig fields (tests: log_every_steps, warmup_steps, ...)

    def __post_init__(self):
        real = [self.corpus, self.dev, self.blimp_dir]
        require(all(p is None for p in real) or all(p is not None for p in real),
                "real-data quickstart needs all of --corpus, --dev and --blimp-dir")


MARKER = "quickstart.json"  # written first ({"status": "running"}), replaced by the report at the end


def check_out(out: Path, overwrite: bool) -> None:
    """--out must be new or empty; with --overwrite it may also be a folder a quickstart made (its marker)."""
    if not out.exists():
        return
    require(out.is_dir(), f"--out {out} is not a folder")
    if not any(out.iterdir()):
        return
    require(overwrite, f"{out} already exists; pass --overwrite to replace it")
    require((out / MARKER).is_file(), f"{out} is not a quickstart folder (no {MARKER}); refusing to overwrite it")


def check_inputs(cfg: QuickstartConfig) -> None:
    """Real data: the corpus, dev and evaluation folders are checked before anything runs (not after an hour)."""
    if cfg.corpus is None:
        return
    from bl2.data.corpus import DEV_SUFFIXES, TRAIN_SUFFIXES, find_files
    from bl2.eval.blimp_data import suite_folders

    find_files(Path(cfg.corpus), TRAIN_SUFFIXES, "corpus")
    find_files(Path(cfg.dev), DEV_SUFFIXES, "dev")
    suite_folders(Path(cfg.blimp_dir), "all")


def quickstart(cfg: QuickstartConfig) -> dict:
    from bl2.locks import hold

    out = Path(cfg.out)
    check_inputs(cfg)
    check_out(out, cfg.overwrite)
    with hold(out, "quickstart folder"):
        check_out(out, cfg.overwrite)  # again, under the lock
        if out.exists() and any(out.iterdir()):
            shutil.rmtree(out)  # only a quickstart's own folder (checked above)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text(json.dumps({"status": "running"}) + "\n")
        return _pipeline(cfg, out)


def _pipeline(cfg: QuickstartConfig, out: Path) -> dict:
    from bl2.progress import console

    t0, timings = time.perf_counter(), {}

    def step(name: str, fn, *args, **kw):
        console.rule(f"[bold]{name}")
        t = time.perf_counter()
        result = fn(*args, **kw)
        timings[name] = round(time.perf_counter() - t, 1)
        return result

    corpus, dev, blimp_dir = step("sample data" if cfg.corpus is None else "inputs", _inputs, cfg, out)
    data = out / "data"
    step("prepare", _prepare, cfg, corpus, dev, data)
    teachers = [out / "runs" / f"teacher{s}" for s in (0, 1)]
    for seed, t_dir in enumerate(teachers):
        step(f"pretrain teacher{seed}", _train, cfg, data, t_dir, seed=seed)
    cache = out / "cache.zarr"
    step("cache-logits", _cache, cfg, data, teachers, cache)
    student = out / "runs" / "student"
    step("distill student", _train, cfg, data, student, seed=2, cache=cache)
    (out / "eval").mkdir()
    loss = step("eval loss", _loss, cfg, teachers + [student], data, out / "eval")
    blimp = step("eval blimp", _blimp, cfg, teachers, student, blimp_dir, out / "eval")
    step("report", _make_report, out, teachers + [student], cache)
    report = _report(cfg, out, loss, blimp, teachers, student, cache, data, timings, time.perf_counter() - t0)
    return report


def _inputs(cfg: QuickstartConfig, out: Path):
    if cfg.corpus is not None:
        return cfg.corpus, cfg.dev, cfg.blimp_dir
    from bl2.data.sample import write_sample_corpus, write_sample_pairs

    corpus, dev = write_sample_corpus(out / "sample", n_train_lines=cfg.sample_lines,
                                      n_dev_lines=max(200, cfg.sample_lines // 10))
    return corpus, dev, write_sample_pairs(out / "sample")


def _prepare(cfg, corpus, dev, data):
    from bl2.data.prepare import PrepareConfig, prepare

    prepare(PrepareConfig(corpus, dev, data, vocab_size=cfg.vocab_size))


def _train(cfg: QuickstartConfig, data: Path, out: Path, seed: int, cache: Path | None = None):
    from bl2.distill.config import TrainConfig
    from bl2.distill.run import distill, pretrain

    values = dict(preset=cfg.preset, seed=seed, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                  max_steps=cfg.max_steps, log_every_steps=25, ckpt_every_steps=10_000) | cfg.extra
    if cache is None:
        return pretrain(TrainConfig(**values), data, out, device=cfg.device)
    values |= dict(alpha=cfg.alpha, temperature=cfg.temperature, kl_reduction=cfg.kl_reduction)
    return distill(TrainConfig(**values), out, cache=cache, data_dir=data, device=cfg.device)


def _cache(cfg: QuickstartConfig, data: Path, teachers: list[Path], cache: Path):
    from bl2.cache.writer import CacheLogitsConfig, cache_logits

    # with --max-steps the student reads max_steps x batch_size windows: cache those, not the whole split
    limit = cfg.max_steps * cfg.batch_size if cfg.max_steps else None
    cache_logits(CacheLogitsConfig(data=data, teachers=teachers, out=str(cache), k=cfg.k,
                                   temperatures=[cfg.temperature], device=cfg.device, max_windows=limit))


def _loss(cfg: QuickstartConfig, models: list[Path], data: Path, evals: Path) -> dict:
    from bl2.eval.loss import evaluate_loss
    from bl2.runs.card import record_loss
    from bl2.runtime import pick_device

    device = pick_device(cfg.device)
    results = {}
    for group, name in ((models[:2], "loss_teachers.json"), (models[2:], "loss_student.json")):
        report = evaluate_loss(group, data, split="test", device=device, out=evals / name)
        record_loss(report, evals / name)  # each run dir's evals.json and model card, as `bl2 eval loss --out`
        results |= report["results"]
    return results


def _blimp(cfg: QuickstartConfig, teachers: list[Path], student: Path, blimp_dir: Path, evals: Path) -> dict:
    from bl2.eval.blimp import evaluate_blimp
    from bl2.runtime import pick_device

    device = pick_device(cfg.device)
    suite = "filtered" if cfg.corpus is None else "all"
    from bl2.runs.card import record_blimp

    rows = []
    for group, name in ((teachers, "blimp_teachers.json"), ([student], "blimp_student.json")):
        results = evaluate_blimp(group, blimp_dir, suite=suite, limit=cfg.eval_limit, device=device, show=False,
                                 out=evals / name)
        label = "built-in synthetic pairs (not BLiMP)" if cfg.corpus is None else None
        record_blimp(results, evals / name, cfg.eval_limit, label)  # evals.json and model cards, as `eval blimp --out`
        rows += results
    return {str(r.model_dirs[0]) if r.kind != "ensemble" else "ensemble": r for r in rows}


def _make_report(out: Path, runs: list[Path], cache: Path) -> None:
    from bl2.progress import console
    from bl2.workflows.report.build import EXTRA_HINT, ReportConfig, report

    if importlib.util.find_spec("matplotlib") is None:
        console.print(f"[yellow]report skipped:[/] matplotlib is not installed ({EXTRA_HINT})")
        return
    report(ReportConfig(runs=[str(r) for r in runs], out=out / "report", evals=[str(out / "eval")],
                        caches=[str(cache)]))


def _report(cfg, out, loss, blimp, teachers, student, cache, data, timings, total_s) -> dict:
    from rich.table import Table

    from bl2.progress import console

    names = {str(teachers[0]): "teacher0", str(teachers[1]): "teacher1", "ensemble": "ensemble (direct, 2 teachers)",
             str(student): "student (distilled from the cache)"}
    rows = []
    for key, name in names.items():
        b = blimp[key]
        suites = {s: round(100 * v["score"], 2) for s, v in b.suites.items()}
        rows.append({"model": name, "path": key, "test_ce": loss[key]["ce"], "test_ppl": loss[key]["ppl"],
                     "minimal_pairs_pct": suites})
    verdict = effect_verdict(rows[0]["test_ce"], rows[1]["test_ce"], rows[3]["test_ce"])
    beats, caption = verdict["established"], verdict["text"]
    table = Table(title="bl2 quickstart results (test split)", caption=caption)
    table.add_column("model")
    table.add_column("test CE", justify="right")
    table.add_column("ppl", justify="right")
    suite_names = list(rows[0]["minimal_pairs_pct"])
    synthetic = cfg.corpus is None  # the built-in pairs are written in BLiMP's layout but are not BLiMP
    for s in suite_names:
        table.add_column(f"{'built-in synthetic pairs (not BLiMP)' if synthetic else 'BLiMP ' + s} acc %",
                         justify="right")
    for r in rows:
        table.add_row(r["model"], f"{r['test_ce']:.4f}", f"{r['test_ppl']:.2f}",
                      *[f"{r['minimal_pairs_pct'][s]:.1f}" for s in suite_names])
    console.print(table)
    paths = {"data": data, "teachers": teachers, "cache": cache, "student": student,
             "results": out / MARKER}
    if (out / "report" / "report.md").is_file():
        paths["report"] = out / "report" / "report.md"
    for what, p in paths.items():
        console.print(f"  {what:9s} {', '.join(map(str, p)) if isinstance(p, list) else p}")
    if synthetic:
        console.print("minimal pairs: the built-in synthetic pairs (BLiMP's file layout, generated from the sample "
                      "corpus's grammar): not BLiMP, not comparable to BLiMP scores (the run dirs' evals.json and "
                      "model cards say so too)", soft_wrap=True)
    budget = _budget_note(student)
    if budget:
        console.print(budget, soft_wrap=True)
    console.print(f"total {total_s / 60:.1f} min; steps: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    report = {"rows": rows, "student_beats_best_teacher": beats, "effect": verdict, "caption": caption,
              "minimal_pairs": "built-in synthetic pairs (not BLiMP)" if synthetic else "BLiMP",
              "budget_note": budget, "timings_s": timings,
              "total_s": round(total_s, 1), "config": json.loads(json.dumps(asdict(cfg), default=str)),
              "paths": json.loads(json.dumps(paths, default=str))}
    (out / MARKER).write_text(json.dumps(report, indent=2))
    return report


def effect_verdict(teacher0_ce: float, teacher1_ce: float, student_ce: float) -> dict:
    """Is "the student beats both teachers" established? Only when the student's gap to the best teacher exceeds
    the seed noise this run can estimate: the CE difference of the two teachers, the same recipe from two seeds.
    Two seeds make a rough estimate, so a gap inside it is reported as not established, never as an effect."""
    best, noise = min(teacher0_ce, teacher1_ce), abs(teacher0_ce - teacher1_ce)
    gap = best - student_ce  # > 0: the student is better
    head = (f"student test CE {student_ce:.4f} vs best teacher {best:.4f} (gap {gap:+.4f}); seed noise estimated "
            f"from the two teachers: {noise:.4f}. ")
    if gap > noise:
        text = head + "The student beats both teachers by more than the seed noise (the paper's effect appears here)."
    elif -gap > noise:
        text = head + "The student is worse than the best teacher by more than the seed noise (no effect here)."
    else:
        text = head + "The gap is within the seed noise: the effect is not established at this size."
    return {"established": gap > noise, "gap": gap, "seed_noise": noise, "text": text}


def _budget_note(student: Path) -> str | None:
    """The BabyLM budget of the demo recipe: it trains many epochs over a tiny corpus, which the 10-epoch cap
    forbids; say so rather than let `bl2 budget --cap-epochs 10` surprise the user."""
    from bl2.runs import record

    summary = record.read(student).get("summary") or {}
    eq = summary.get("epoch_equivalents")
    if eq is None:
        return None
    verdict = ("within" if eq <= 10 else "over") + " BabyLM's cap of 10"
    why = ("" if eq <= 10 else ": the demo trains 2 teachers and the student for many epochs of a small corpus, "
           "the paper's regime of many passes, so `bl2 budget RUN --cap-epochs 10` exits 1 on it; a recipe within "
           "the cap: see the README's budget section")
    return f"budget: the student and its teachers used {eq:.1f} epoch-equivalents of the corpus, {verdict}{why}"
