"""bl2 pretrain and the training loop: learning, exact resume, golden losses, HF round trip, eval loss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, run_cli, run_with_crash

from bl2.distill import checkpoint
from bl2.distill.config import TrainConfig
from bl2.distill.run import pretrain
from bl2.runs import metrics

GOLDEN = Path(__file__).parent / "assets" / "golden_debug_losses.json"


def debug_cfg(**kw) -> TrainConfig:
    base = dict(preset="debug", seed=0, batch_size=8, max_steps=6, warmup_steps=2, lr=3e-3, log_every_steps=1,
                ckpt_every_steps=1, keep_checkpoints=10, eval_batch_size=32)
    return TrainConfig(**(base | kw))


def ce_rows(run_dir: Path) -> list[float]:
    return [r["ce"] for r in metrics.read(run_dir / "metrics.jsonl", "train")]


def state_of(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model.safetensors"))


def test_pretrain_lowers_loss_and_writes_run_dir(tmp_path, data_dir):
    out = tmp_path / "run"
    summary = pretrain(debug_cfg(max_steps=12, lr=1e-2), data_dir, out, device="cpu")
    ces = ce_rows(out)
    assert len(ces) == 12 and ces[-1] < ces[0] - 0.5
    for name in ("run.json", "metrics.jsonl", "config.json", "model.safetensors", "tokenizer.json"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["config"]["preset"] == "debug" and run["provenance"]["torch"] == torch.__version__
    assert run["config"]["log_every_steps"] == 1 and "log_every_steps" not in run["identity"]["config"]
    assert "device" in run["provenance"] and "git_sha" in run["provenance"]
    assert summary["best_val_ce"] is not None and checkpoint.latest(out).name == "step-000012"


def test_golden_losses(tmp_path, data_dir):
    """The first 10 CE values of the seeded debug run. Regenerate deliberately with BL2_UPDATE_GOLDEN=1."""
    import os

    out = tmp_path / "golden"
    pretrain(debug_cfg(max_steps=10), data_dir, out, device="cpu")
    ces = ce_rows(out)
    if os.environ.get("BL2_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"ce": ces}, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())["ce"]
    assert ces == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_exact_resume(tmp_path, data_dir, monkeypatch):
    """6 uninterrupted steps vs 3 steps, a crash, and --resume for the other 3: identical weights."""
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    pretrain(debug_cfg(), data_dir, full, device="cpu")

    run_with_crash(monkeypatch, lambda: pretrain(debug_cfg(), data_dir, crashed, device="cpu"), crash_step=3)
    assert not (crashed / "model.safetensors").exists()
    pretrain(debug_cfg(), data_dir, crashed, resume=True, device="cpu")
    a, b = state_of(full), state_of(crashed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ce_rows(full) == ce_rows(crashed)  # metrics after the checkpoint were truncated, then re-logged


def test_run_dir_is_hf_model_dir(tmp_path, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bl2.model.io import build_model

    out = tmp_path / "hf"
    pretrain(debug_cfg(max_steps=2), data_dir, out, device="cpu")
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    mem = build_model("debug", loaded.config.vocab_size, 128, seed=0)
    checkpoint.load_best(out, mem)
    mem.eval()
    ids = AutoTokenizer.from_pretrained(out)(" The dog likes the ball.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, mem(ids).logits, atol=1e-6)
    assert loaded.config.max_position_embeddings == 256 and loaded.config.num_key_value_heads == 1


def test_eval_loss_single_and_ensemble(tmp_path, data_dir, debug_model_dir):
    import numpy as np

    from bl2.data.store import TokenStore
    from bl2.data.windows import eval_windows
    from bl2.eval.loss import evaluate_loss, windows_ce
    from bl2.model.io import load_model

    one = evaluate_loss([debug_model_dir], data_dir, split="val", device="cpu")["results"]
    two = evaluate_loss([debug_model_dir, debug_model_dir], data_dir, split="val", device="cpu")["results"]
    model = load_model(debug_model_dir)
    windows = eval_windows(TokenStore(data_dir).split("val"), 128)
    direct = windows_ce(lambda ids: model(input_ids=ids).logits, windows, 16, "cpu")
    assert one[str(debug_model_dir)]["ce"] == pytest.approx(direct, rel=1e-6)
    assert two["ensemble"]["ce"] == pytest.approx(direct, rel=1e-5)
    assert np.isclose(one[str(debug_model_dir)]["ppl"], np.exp(direct), rtol=1e-5)


def test_eval_loss_cli_ensemble_of_two(tmp_path, data_dir, debug_model_dir):
    from bl2.data.store import TokenStore
    from bl2.model.io import build_model, save_model_dir

    other = tmp_path / "other"
    save_model_dir(build_model("debug", TokenStore(data_dir).vocab_size, 128, seed=1), other, data_dir)
    out = tmp_path / "loss.json"
    r = run_cli("eval", "loss", f"{debug_model_dir},{other}", "--data", data_dir, "--split", "val", "--out", out)
    assert r.exit_code == 0, r.stderr
    res = json.loads(out.read_text())["results"]
    assert set(res) == {str(debug_model_dir), str(other), "ensemble"}


def test_user_errors(tmp_path, data_dir, debug_model_dir, corpus_dirs):
    from bl2.data.store import TokenStore
    from bl2.model.io import build_model, save_model_dir

    out = tmp_path / "r"
    assert_user_error(run_cli("pretrain", "--data", data_dir, "--preset", "huge", "--out", out), "is not one of")
    assert_user_error(run_cli("pretrain", "--data", corpus_dirs[0], "--preset", "debug", "--out", out), "tokens.zarr")
    r = run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", out, "--max-steps", "1",
                "--batch-size", "8", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert_user_error(run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", out, "--max-steps", "1",
                              "--batch-size", "8"), "already exists")
    assert_user_error(run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", out, "--max-steps", "2",
                              "--batch-size", "8", "--resume"), "different configuration", "max_steps")
    assert (out / "model.safetensors").is_file()  # nothing destroyed
    # ensemble members with a different vocab / tokenizer
    other = tmp_path / "v500"
    save_model_dir(build_model("debug", 500, 128, seed=0), other, data_dir)
    assert_user_error(run_cli("eval", "loss", f"{debug_model_dir},{other}", "--data", data_dir), "vocab")
    tok2 = tmp_path / "tok2"
    save_model_dir(build_model("debug", TokenStore(data_dir).vocab_size, 128, seed=0), tok2, data_dir)
    (tok2 / "tokenizer.json").write_text((tok2 / "tokenizer.json").read_text().replace('"<pad>"', '"<PAD>"'))
    assert_user_error(run_cli("eval", "loss", f"{debug_model_dir},{tok2}", "--data", data_dir), "different tokenizers")
    assert_user_error(run_cli("eval", "loss", debug_model_dir, "--data", data_dir, "--seq-len", "300"), "exceeds")


def test_config_file_and_resume_of_finished_run(tmp_path, data_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 8\nmax-steps: 2\nwarmup: 1\n")
    out = tmp_path / "r"
    r = run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", out, "--config", cfg, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    ident = json.loads((out / "run.json").read_text())["identity"]["config"]
    assert (ident["batch_size"], ident["max_steps"], ident["warmup_steps"]) == (8, 2, 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 8\n")
    assert_user_error(run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", tmp_path / "x",
                              "--config", bad), "unknown config keys", "batch_sise")
    before = state_of(out)
    r = run_cli("pretrain", "--data", data_dir, "--preset", "debug", "--out", out, "--config", cfg, "--resume")
    assert r.exit_code == 0, r.stderr
    after = state_of(out)
    assert all(torch.equal(before[k], after[k]) for k in before)
    shutil.rmtree(out)


def test_resume_accepts_new_logging_settings(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "r"
    run_with_crash(monkeypatch, lambda: pretrain(debug_cfg(), data_dir, out, device="cpu"), crash_step=2)
    pretrain(debug_cfg(log_every_steps=3, ckpt_every_steps=2), data_dir, out, resume=True, device="cpu")
    assert checkpoint.latest(out).name == "step-000006"


def test_hooks_see_every_row_and_can_stop_the_run(tmp_path, data_dir):
    """A hook gets each metrics row as written; StopRun ends the run cleanly with a final model dir."""
    from bl2.distill.job import pretrain_job
    from bl2.distill.loop import StopRun, train

    seen = []

    def hook(row):
        seen.append(row)
        if row["kind"] == "train" and row["step"] == 3:
            raise StopRun("enough")

    out = tmp_path / "stopped"
    summary = train(pretrain_job(debug_cfg(), str(data_dir)), str(out), device="cpu", hooks=[hook])
    assert [r["step"] for r in seen if r["kind"] == "train"] == [1, 2, 3]
    assert summary["stopped"] == "enough" and summary["step"] == 3
    assert metrics.events(out / "metrics.jsonl", "stopped")[0]["reason"] == "enough"
    assert seen == metrics.read(out / "metrics.jsonl")  # the hooks saw exactly what was written
    assert (out / "model.safetensors").is_file() and checkpoint.latest(out).name == "step-000003"
