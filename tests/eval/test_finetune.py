"""`bl2 finetune`: a debug model learns a made-up RTE-shaped task, metrics against hand-computed values, the
official input formatting, the recipe table, the official schedule, and bad input as one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli

from bl2.errors import UserError
from bl2.eval.finetune.tasks import BABYLM2025, format_row, metrics, recipe
from bl2.eval.finetune.train import lr_factor


def write_rte(folder: Path, n: int, split: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"sentence1": f"the cat number {i} sat here", "sentence2": "answer yes" if i % 2 else "answer no",
             "label": i % 2, "idx": i} for i in range(n)]
    (folder / f"rte.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_debug_model_learns_a_made_up_task(tmp_path, debug_model_dir):
    data = tmp_path / "glue"
    write_rte(data, 64, "train")
    write_rte(data, 64, "valid")  # the same rows: what is measured is training accuracy
    out = tmp_path / "ft"
    r = run_cli("finetune", debug_model_dir, "--task", "rte", "--data-dir", data, "--out", out, "--lr", "3e-3",
                "--epochs", "6", "--batch-size", "16", "--device", "cpu", "--babylm-results", tmp_path / "res")
    assert r.exit_code == 0, r.stderr
    res = json.loads((out / "rte" / "results.json").read_text())
    assert res["metrics"]["accuracy"] > res["majority_baseline"] + 0.2
    rows = [json.loads(line) for line in (out / "rte" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "val"] == list(range(1, 7))
    assert all(r["seconds"] > 0 for r in rows if r["kind"] == "train")  # each epoch's training time
    preds = json.loads((tmp_path / "res" / Path(debug_model_dir).stem / "main" / "finetune" / "rte" /
                        "predictions.json").read_text())
    assert [p["id"] for p in preds["rte"]["predictions"]][:2] == ["rte_0", "rte_1"]
    assert json.loads((out / "results.json").read_text())["average"] == res["score"]


def test_metrics_against_hand_computed_values():
    m = metrics([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])  # tp 2, fp 1, fn 1, tn 2
    assert m["accuracy"] == pytest.approx(4 / 6) and m["f1"] == pytest.approx(4 / 6)
    assert m["mcc"] == pytest.approx((2 * 2 - 1 * 1) / math.sqrt(3 * 3 * 3 * 3))
    labels, preds = [0, 1, 2, 0, 1, 2, 2], [0, 2, 1, 0, 0, 2, 2]
    x, y = np.eye(3)[labels], np.eye(3)[preds]  # multiclass MCC: the correlation of the one-hot matrices
    cov = lambda a, b: ((a - a.mean(0)) * (b - b.mean(0))).sum()  # noqa: E731
    assert metrics(labels, preds)["mcc"] == pytest.approx(cov(x, y) / math.sqrt(cov(x, x) * cov(y, y)))
    assert metrics([0, 0], [0, 0])["mcc"] == 0.0  # undefined: 0, as sklearn


def test_inputs_follow_the_official_formatting():
    assert format_row("rte", {"sentence1": "A.", "sentence2": "B."}) == ("A.", "B.")
    assert format_row("boolq", {"question": "q?", "passage": "p."}) == ("q?", "p.")
    assert format_row("multirc", {"question": "q?", "answer": "a", "paragraph": "p."}) == ("Question: q? Answer: a",
                                                                                          "p.")
    assert format_row("wsc", {"span1_text": "Joe", "span2_text": "he", "text": "t."}) == (
        'Does "he" refer to "Joe" in this passage?', "t.")
    assert format_row("cola", {"sentence": "s."}) == "s."


def test_recipes_are_the_official_defaults():
    rte, boolq, wsc = recipe("babylm2025", "rte"), recipe("babylm2025", "boolq"), recipe("babylm2025", "wsc")
    assert (rte["lr"], rte["batch_size"], rte["epochs"], rte["seed"], rte["max_length"]) == (3e-5, 32, 10, 42, 512)
    assert boolq["batch_size"] == 16 and recipe("babylm2025", "multirc")["batch_size"] == 16 and wsc["epochs"] == 30
    assert BABYLM2025["warmup_proportion"] == 0.06 and BABYLM2025["min_factor"] == 0.1
    with pytest.raises(UserError, match="not available offline"):
        recipe("paper", "rte")


def test_schedule_is_the_official_one():
    assert lr_factor(0, 10, 100, 0.1, "cosine") == 0 and lr_factor(5, 10, 100, 0.1, "cosine") == 0.5
    assert lr_factor(10, 10, 100, 0.1, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1, "cosine") == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, 10, 100, 0.1, "cosine") == pytest.approx(0.1)


def test_bad_input_is_one_line(tmp_path, debug_model_dir):
    data = tmp_path / "glue"
    write_rte(data, 8, "train")
    write_rte(data, 8, "valid")
    base = ("finetune", debug_model_dir, "--data-dir", data, "--epochs", "1")
    assert_user_error(run_cli(*base, "--task", "nope", "--out", tmp_path / "a"), "unknown task")
    assert_user_error(run_cli(*base, "--task", "boolq", "--out", tmp_path / "b"), "boolq.train.jsonl",
                      "official BabyLM data")
    assert_user_error(run_cli(*base, "--task", "rte", "--out", tmp_path / "c", "--recipe", "paper"),
                      "not available offline")
    (tmp_path / "d").mkdir()
    assert_user_error(run_cli(*base, "--task", "rte", "--out", tmp_path / "d"), "already exists")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "rte.train.jsonl").write_text(json.dumps({"sentence1": "a", "sentence2": "b", "label": 7}) + "\n")
    shutil.copy(data / "rte.valid.jsonl", bad)
    assert_user_error(run_cli("finetune", debug_model_dir, "--data-dir", bad, "--task", "rte", "--out",
                              tmp_path / "e"), "label 7")
    no_tok = tmp_path / "notok"
    shutil.copytree(debug_model_dir, no_tok)
    for f in no_tok.glob("tokenizer*"):
        f.unlink()
    assert_user_error(run_cli("finetune", no_tok, "--data-dir", data, "--task", "rte", "--out", tmp_path / "f"),
                      "no tokenizer")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_official_heads_pool_where_the_official_code_does(debug_model_dir):
    """babylm2025 = the official ClassifierHead on position 0, which in a causal decoder sees only the first
    token (so inputs that share it get the same logits); babylm2025-last reads the last non-pad token."""
    import torch

    from bl2.eval.finetune.heads import build

    torch.manual_seed(0)
    ids = torch.tensor([[5, 9, 11, 0], [5, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    first, last = build("babylm2025", debug_model_dir, 3).eval(), build("babylm2025-last", debug_model_dir, 3).eval()
    with torch.no_grad():
        a = first(ids, mask).logits
        b = last(ids, mask).logits
        states = last.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        by_hand = last.classifier(torch.stack([states[0, 2], states[1, 1]]))
    assert a.shape == (2, 3) and torch.allclose(a[0], a[1])
    assert not torch.allclose(b[0], b[1]) and torch.allclose(b, by_hand)
    assert [type(m).__name__ for m in first.classifier] == ["LayerNorm", "Linear", "GELU", "LayerNorm", "Dropout",
                                                            "Linear"]
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        loss = first(ids, mask, labels).loss.item()
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(a, labels).item())


def test_official_head_trains_and_writes_a_run_record(tmp_path, debug_model_dir):
    data = tmp_path / "glue"
    write_rte(data, 64, "train")
    write_rte(data, 64, "valid")
    out = tmp_path / "ft"
    r = run_cli("finetune", debug_model_dir, "--task", "rte", "--data-dir", data, "--out", out, "--lr", "3e-3",
                "--epochs", "6", "--batch-size", "16", "--device", "cpu", "--head", "babylm2025-last")
    assert r.exit_code == 0, r.stderr
    res = json.loads((out / "rte" / "results.json").read_text())
    assert res["head"].startswith("babylm2025-last") and res["metrics"]["accuracy"] > res["majority_baseline"] + 0.2
    run = json.loads((out / "rte" / "run.json").read_text())
    assert run["kind"] == "finetune" and run["head"] == "babylm2025-last" and run["hyper"]["lr"] == 3e-3
    assert run["summary"]["score"] == res["score"] and "torch" in run["provenance"]
    top = json.loads((out / "results.json").read_text())
    assert top["kind"] == "finetune" and top["model"] == str(debug_model_dir) and top["head"] == "babylm2025-last"


def test_resume_keeps_finished_tasks_and_refuses_other_settings(tmp_path, debug_model_dir):
    data = tmp_path / "glue"
    write_rte(data, 16, "train")
    write_rte(data, 16, "valid")
    out = tmp_path / "ft"
    base = ("finetune", debug_model_dir, "--task", "rte", "--data-dir", data, "--out", out, "--epochs", "1",
            "--device", "cpu")
    assert run_cli(*base).exit_code == 0
    first = (out / "rte" / "results.json").read_text()
    assert_user_error(run_cli(*base), "already exists", "--resume")
    r = run_cli(*base, "--resume")
    assert r.exit_code == 0 and "kept (--resume)" in r.stdout
    assert (out / "rte" / "results.json").read_text() == first  # not re-run
    assert_user_error(run_cli(*base, "--resume", "--lr", "1e-3"), "other settings", "lr 0.001")
    (out / "rte" / "results.json").unlink()  # an unfinished task: run again
    r = run_cli(*base, "--resume")
    assert r.exit_code == 0 and (out / "rte" / "results.json").is_file() and "kept" not in r.stdout


def test_an_output_in_use_is_refused_in_one_line(tmp_path, debug_model_dir):
    from bl2.locks import hold

    data = tmp_path / "glue"
    write_rte(data, 8, "train")
    write_rte(data, 8, "valid")
    out = tmp_path / "ft"
    with hold(out, "fine-tuning output"):  # another `bl2 finetune` writing there
        r = run_cli("finetune", debug_model_dir, "--task", "rte", "--data-dir", data, "--out", out, "--epochs", "1",
                    "--device", "cpu")
    assert_user_error(r, "in use by")
    assert not out.exists()
