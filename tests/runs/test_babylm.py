"""BabyLM 2025/2026 conventions: words per token and words seen, word-count checkpoints (right step, right
weights, kept and rewritten identically by a resume), the budget ledger (`bl2 budget`), model cards (with the
results `bl2 eval --out` records) and fine-tuning compatibility (AutoModelForSequenceClassification)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_user_error, make_debug_model, run_cli, run_with_crash

from bl2.data.store import TokenStore
from bl2.distill import checkpoint
from bl2.distill.config import TrainConfig
from bl2.distill.run import pretrain
from bl2.errors import UserError
from bl2.runs import metrics
from bl2.runs.marks import BABYLM_MARKS, WORD_DIR, mark_name, parse_count, parse_marks

BASE = dict(preset="debug", seed=0, batch_size=8, max_steps=6, warmup_steps=2, lr=3e-3, log_every_steps=1,
            ckpt_every_steps=1, keep_checkpoints=10, eval_batch_size=32)
TOKENS_PER_STEP = 8 * 128  # batch x seq_len: the predicted positions of one optimizer step


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def marks_for(wpt: float) -> dict[int, int]:
    """Word marks chosen so that each lands at a known step: {mark: first step whose words seen reach it}.
    Marks 2.5 and 2.9 steps' worth both land at step 3 (two marks in one step)."""
    per_step = TOKENS_PER_STEP * wpt
    marks = {int(f * per_step): math.ceil(int(f * per_step) / per_step) for f in (0.5, 2.5, 2.9, 4.2)}
    assert sorted(marks.values()) == [1, 3, 3, 5]
    return marks


@pytest.fixture(scope="module")
def marked_run(tmp_path_factory, data_dir):
    """A 6-step debug pretraining with four word marks (two in one step), checkpoints at every step."""
    marks = marks_for(TokenStore(data_dir).words_per_token("train"))
    out = tmp_path_factory.mktemp("babylm") / "run"
    cfg = TrainConfig(**BASE, word_checkpoints=",".join(map(str, marks)))
    pretrain(cfg, data_dir, out, device="cpu")
    return out, cfg, marks


# ----------------------------------------------------------------------------------------------- words
def test_words_per_token_recorded_and_derived(data_dir):
    store = TokenStore(data_dir)
    files = store.attrs["files"]
    for split in ("train", "val", "test"):
        expected = sum(r["words"] for r in files[split]) / store.n_tokens(split)
        assert store.words_per_token(split) == pytest.approx(expected, rel=1e-12)
    assert 0.3 < store.words_per_token() < 1.5
    recorded = store.attrs.pop("words_per_token")  # a DATA dir from before the explicit record
    assert store.words_per_token("train") == pytest.approx(recorded["train"], rel=1e-12)


def test_marks_parse_and_name_like_the_2025_pipeline():
    babylm = parse_marks("babylm")
    assert babylm == BABYLM_MARKS and len(babylm) == 9 + 10 + 9
    names = [mark_name(m) for m in babylm]
    assert names[:10] == [f"chck_{i}M" for i in range(1, 11)] and names[10:19] == [f"chck_{i}M" for i in
                                                                                      range(20, 101, 10)]
    assert names[-1] == "chck_1000M" and "chck_200M" in names
    assert parse_marks("2M, 500K,1M,1M") == (500_000, 1_000_000, 2_000_000)
    assert parse_marks(["1M", 2000]) == (2000, 1_000_000)
    assert [mark_name(m) for m in (500_000, 1_500_000, 1234)] == ["chck_500K", "chck_1500K", "chck_1234"]
    assert parse_count("2.5M") == 2_500_000 and parse_marks(None) == ()
    for bad in ("1X", "0", "-1M", "1.5", "", "babylm,1M"):
        with pytest.raises(UserError):
            parse_marks(bad)
    with pytest.raises(UserError, match="word_checkpoints|--word-checkpoints"):
        TrainConfig(preset="debug", word_checkpoints="ten")
    assert "word_checkpoints" not in TrainConfig(preset="debug", word_checkpoints="1M").identity()


def test_marks_land_at_the_right_step_with_that_steps_weights(marked_run):
    out, _, marks = marked_run
    for mark, step in marks.items():
        d = out / WORD_DIR / mark_name(mark)
        info = json.loads((d / "words.json").read_text())
        assert (info["words"], info["step"], info["tokens_seen"]) == (mark, step, step * TOKENS_PER_STEP)
        assert info["words_seen"] >= mark
        saved = weights(d)
        at_step = torch.load(out / "checkpoints" / f"step-{step:06d}" / "model.pt", weights_only=True)
        assert same(saved, {k: at_step[k] for k in saved})
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            assert (d / name).is_file()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out / WORD_DIR / mark_name(min(marks))))
    assert model.config.vocab_size > 0


def test_words_seen_in_metrics_and_run_json(marked_run, data_dir):
    out, _, _ = marked_run
    wpt = TokenStore(data_dir).words_per_token("train")
    rows = metrics.read(out / "metrics.jsonl", "train")
    assert [r["tokens_seen"] for r in rows] == [s * TOKENS_PER_STEP for s in range(1, 7)]
    assert [r["words_seen"] for r in rows] == [round(s * TOKENS_PER_STEP * wpt) for s in range(1, 7)]
    doc = json.loads((out / "run.json").read_text())
    assert doc["summary"]["words_seen"] == rows[-1]["words_seen"] and doc["summary"]["teacher_words"] == 0
    assert doc["budget"]["words_per_token"] == pytest.approx(wpt)
    assert doc["summary"]["epoch_equivalents"] == pytest.approx(rows[-1]["words_seen"] / doc["budget"]["corpus_words"])
    assert metrics.events(out / "metrics.jsonl", "done")[0]["words_seen"] == rows[-1]["words_seen"]


def test_resume_keeps_marks_and_rewrites_them_identically(tmp_path, marked_run, data_dir, monkeypatch):
    """Crash after step 4 (the marks of steps 1 and 3 are on disk), drop the step-3 and step-4 checkpoints so
    that the resume starts at step 2: the step-1 mark is kept as it is, the step-3 marks are passed and written
    again, the step-5 mark is new; all equal the uninterrupted run's bit for bit."""
    ref, cfg, marks = marked_run
    out = tmp_path / "crashed"
    run_with_crash(monkeypatch, lambda: pretrain(cfg, data_dir, out, device="cpu"), crash_step=4)
    names = sorted(mark_name(m) for m, s in marks.items() if s <= 4)
    assert sorted(p.name for p in (out / WORD_DIR).iterdir()) == names
    for later in ("step-000003", "step-000004"):
        shutil.rmtree(out / "checkpoints" / later)
    first = (out / WORD_DIR / mark_name(min(marks)) / "words.json").stat().st_mtime_ns
    pretrain(cfg, data_dir, out, resume=True, device="cpu")
    assert (out / WORD_DIR / mark_name(min(marks)) / "words.json").stat().st_mtime_ns == first  # kept
    for mark in marks:
        assert same(weights(ref / WORD_DIR / mark_name(mark)), weights(out / WORD_DIR / mark_name(mark)))
    assert checkpoint.latest(out).name == "step-000006" and not list((out / WORD_DIR).glob("*.tmp"))


def test_word_checkpoints_on_the_command_line(tmp_path, data_dir):
    out = tmp_path / "cli"
    r = run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", out, "--max-steps", "2",
                "--batch-size", "8", "--word-checkpoints", "babylm", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert json.loads((out / "run.json").read_text())["config"]["word_checkpoints"] == "babylm"
    assert not (out / WORD_DIR).exists()  # 2 debug steps never reach 1M words
    # ... and the run says so (#32.5): none written, every mark not reached, with the words it ended at
    line = next(x for x in r.stdout.splitlines() if x.startswith("word checkpoints:"))
    assert line.startswith("word checkpoints: 0 written; 28 not reached (the run ended at "), line
    assert "chck_1M .. chck_1000M" in line, line
    marked = tmp_path / "marked"  # a mark inside the run: written, and named as such
    r = run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", marked, "--max-steps", "2",
                "--batch-size", "8", "--word-checkpoints", "1K,1M", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert "word checkpoints: 1 written (chck_1K); 1 not reached (the run ended at " in r.stdout, r.stdout
    assert "words): chck_1M" in r.stdout and (marked / WORD_DIR / "chck_1K").is_dir()
    assert_user_error(run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", tmp_path / "bad",
                              "--word-checkpoints", "1Q"), "--word-checkpoints", "1Q")
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------------------------- budget
@pytest.fixture(scope="module")
def teacher_runs(tmp_path_factory, data_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("teachers")
    for seed, steps in ((0, 3), (1, 2)):
        pretrain(TrainConfig(**(BASE | dict(seed=seed, max_steps=steps, ckpt_every_steps=100))), data_dir,
                 root / f"t{seed}", device="cpu")
    return [root / "t0", root / "t1"]


def test_budget_ledger_counts_teachers_and_student(tmp_path, data_dir, teacher_runs):
    from bl2.runs.budget import ledger

    out = tmp_path / "student"
    r = run_cli("distill", "--teachers", ",".join(map(str, teacher_runs)), "--data", data_dir, "--preset", "debug",
                "--out", out, "--max-steps", "2", "--batch-size", "8", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "run.json").read_text())
    teacher_words = [json.loads((t / "run.json").read_text())["summary"]["words_seen"] for t in teacher_runs]
    assert [t["total_words"] for t in doc["budget"]["teachers"]] == teacher_words
    own = doc["summary"]["words_seen"]
    assert doc["summary"]["total_words"] == own + sum(teacher_words)
    corpus = doc["budget"]["corpus_words"]
    assert corpus == sum(r["words"] for s in ("train", "val") for r in TokenStore(data_dir).attrs["files"][s])
    led = ledger(out)
    assert [row["words"] for row in led["rows"]] == teacher_words + [own] and led["complete"]
    epochs = (own + sum(teacher_words)) / corpus
    assert led["epoch_equivalents"] == pytest.approx(epochs)
    within = run_cli("budget", out, "--cap-epochs", f"{epochs * 1.01:.6f}")
    assert within.exit_code == 0, within.stderr
    assert "teacher 2" in within.stdout and "within" in within.stdout
    over = run_cli("budget", out, "--cap-epochs", f"{epochs * 0.99:.6f}")
    assert over.exit_code == 1 and "OVER" in over.stdout
    assert run_cli("budget", out, "--cap-epochs", "1", "--corpus-words", "1K").exit_code == 1  # another epoch size
    assert_user_error(run_cli("budget", tmp_path / "nowhere"), "not a bl2 run dir")


def test_budget_of_a_cache_without_teacher_run_dirs(tmp_path, data_dir):
    """Teachers that are plain model dirs: unknown (a lower bound, said so) unless --teacher-words."""
    teachers = [make_debug_model(tmp_path / f"m{s}", data_dir, seed=s) for s in (0, 1)]
    cache = tmp_path / "c.zarr"
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", ",".join(map(str, teachers)), "--out", cache,
                "--k", "8", "--batch-size", "16", "--max-windows", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    common = ("--cache", cache, "--preset", "debug", "--max-steps", "1", "--batch-size", "8", "--device", "cpu")
    r = run_cli("distill", *common, "--out", tmp_path / "unknown")
    assert r.exit_code == 0, r.stderr
    assert "unknown" in r.stdout and "--teacher-words" in r.stdout
    r = run_cli("budget", tmp_path / "unknown", "--cap-epochs", "100")
    assert r.exit_code == 0 and ">=" in r.stdout and "incomplete" in r.stdout
    r = run_cli("distill", *common, "--out", tmp_path / "known", "--teacher-words", "5K,7K")
    assert r.exit_code == 0, r.stderr
    summary = json.loads((tmp_path / "known" / "run.json").read_text())["summary"]
    assert summary["teacher_words"] == 12_000 and summary["total_words"] == 12_000 + summary["words_seen"]
    assert_user_error(run_cli("distill", *common, "--out", tmp_path / "bad", "--teacher-words", "1K,2K,3K"),
                      "--teacher-words")


# ----------------------------------------------------------------------------------------------- model card
def card_header(run_dir: Path) -> dict:
    text = (run_dir / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text[4 : text.index("\n---", 4)])


def test_model_card_and_recorded_evaluations(tmp_path, marked_run, data_dir):
    src, _, marks = marked_run
    run_dir = shutil.copytree(src, tmp_path / "run")
    head = card_header(run_dir)
    assert head["library_name"] == "transformers" and "license" in head and head["license"] is None
    assert {"babylm", "bl2"} <= set(head["tags"])
    text = (run_dir / "README.md").read_text()
    for part in ("## Architecture", "## Data and words seen", "## Training budget", "## Training",
                 "| lr | 0.003 |", mark_name(min(marks)), "Not evaluated yet"):
        assert part in text, part
    assert "## Teachers" not in text  # a pretrained model has none
    # the user's license survives rewrites; eval --out records results in the card
    (run_dir / "README.md").write_text(text.replace("license:", "license: mit #", 1))
    r = run_cli("eval", "loss", run_dir, "--data", data_dir, "--split", "val", "--out", tmp_path / "loss.json",
                "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    evals_dir = tmp_path / "evaluation_data" / "blimp_filtered"
    evals_dir.mkdir(parents=True)
    (evals_dir / "agreement.jsonl").write_text(json.dumps({"sentence_good": "The dog eats.",
                                                           "sentence_bad": "The dog eat."}) + "\n")
    r = run_cli("eval", "blimp", run_dir, "--data-dir", evals_dir.parent, "--suite", "filtered", "--out",
                tmp_path / "blimp.json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert card_header(run_dir)["license"] == "mit"
    text = (run_dir / "README.md").read_text()
    loss = json.loads((tmp_path / "loss.json").read_text())["results"][str(run_dir)]
    assert f"{loss['ce']:.4f} nats/token" in text and "| BLiMP blimp_filtered |" in text
    assert "`../blimp.json`" in text and "Not evaluated yet" not in text  # relative to the run dir (#32.4)
    evals = json.loads((run_dir / "evals.json").read_text())
    assert set(evals) == {"loss", "blimp"} and evals["blimp"]["blimp_filtered"]["n_pairs"] == 1
    assert evals["loss"]["val"]["file"] == "../loss.json"
    assert evals["blimp"]["blimp_filtered"]["file"] == "../blimp.json"
    # a card is published with the model: no absolute local path in it or in evals.json
    assert str(tmp_path) not in text and str(tmp_path) not in json.dumps(evals)


def test_student_card_names_cache_and_teachers(tmp_path, data_dir, teacher_runs):
    from bl2.runs.card import card_text

    cache = tmp_path / "c.zarr"
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", ",".join(map(str, teacher_runs)), "--out", cache,
                "--k", "8", "--batch-size", "16", "--max-windows", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--cache", cache, "--preset", "debug", "--out", tmp_path / "s", "--max-steps", "1",
                "--batch-size", "8", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    text = card_text(tmp_path / "s")
    assert "## Teachers" in text and "`../c.zarr`" in text and "mode `topk`, k = 8" in text
    for t in teacher_runs:
        words = json.loads((t / "run.json").read_text())["summary"]["words_seen"]
        rel = os.path.relpath(t.resolve(), (tmp_path / "s").resolve())
        assert f"| `{rel}` |" in text and f"| {words:,} |" in text
    assert str(tmp_path) not in text and "/" + str(data_dir).strip("/") not in text  # no absolute paths (#32.4)
    assert "knowledge-distillation" in card_header(tmp_path / "s")["tags"]


# ----------------------------------------------------------------------------------------------- fine-tuning
def test_sequence_classification_loads_and_fine_tunes(marked_run):
    """What the BabyLM 2025 (Super)GLUE fine-tuning needs: AutoModelForSequenceClassification on the run dir, a
    pad token, right padding stated; a right-padded row classifies like the same text alone; a few AdamW steps
    on a made-up task lower the loss."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir = marked_run[0]
    assert json.loads((run_dir / "tokenizer_config.json").read_text())["padding_side"] == "right"
    tok = AutoTokenizer.from_pretrained(str(run_dir))
    # portable to transformers 4.x (the BabyLM 2025 pipeline pins 4.51.3; bench_zero_shot.py loads it there)
    tok_config = json.loads((run_dir / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast" and tok_config["add_prefix_space"] is True
    context = json.loads((run_dir / "config.json").read_text())["max_position_embeddings"]
    assert tok_config["model_max_length"] == context
    assert "backend" not in tok_config
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(run_dir), num_labels=2)
    assert tok.pad_token == "<pad>" and tok.padding_side == "right"
    assert model.config.pad_token_id == tok.pad_token_id == 0
    texts = ["the dog likes the ball .", "the cat sees a bird in the park today .", "a dog eats .",
             "my cat has the milk .", "the dog holds it .", "the cat gets some toys at home ."]
    labels = torch.tensor([1 if "dog" in t else 0 for t in texts])
    batch = tok(texts, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any() and (batch["attention_mask"][:, 0] == 1).all()  # padded right
    model.eval()
    with torch.no_grad():
        alone = model(**tok(texts[:1], return_tensors="pt")).logits
        padded = model(**batch).logits[:1]
    torch.testing.assert_close(alone, padded, rtol=1e-4, atol=1e-5)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.05, losses


def test_zero_shot_all_revisions_scores_every_word_checkpoint(marked_run, tmp_path):
    """`bl2 eval zero-shot --all-revisions`: every chck_* dir, each under its revision name and the run's name in
    the official layout (eval_zero_shot_fast_all_revisions.sh)."""
    from bl2.runs.marks import mark_dirs

    run_dir = marked_run[0]
    data = tmp_path / "evaluation_data" / "fast_eval" / "blimp_fast"
    data.mkdir(parents=True)
    (data / "agr.jsonl").write_text(json.dumps({"sentence_good": "The dog sees.", "sentence_bad": "The dog see.",
                                                "field": "m", "UID": "agr", "linguistics_term": "a"}) + "\n")
    out, results = tmp_path / "zs.json", tmp_path / "results"
    r = run_cli("eval", "zero-shot", run_dir, "--all-revisions", "--data-dir", data.parents[1], "--tasks", "blimp",
                "--out", out, "--babylm-results", results)
    assert r.exit_code == 0, r.stderr
    names = [d.name for d in mark_dirs(run_dir)]
    assert list(json.loads(out.read_text())["revisions"]) == names and len(names) == 4
    for name in names:
        assert (results / run_dir.name / name / "zero_shot" / "causal" / "blimp" / "blimp_fast" /
                "predictions.json").is_file()
