"""benchmarks/bench_finetune.py without running it: both tools get the same files and hyperparameters (dry run),
the official log's training bars are found, and bad arguments stop it. The benchmark itself is not a test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_finetune", ROOT / "benchmarks" / "bench_finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layout(tmp_path: Path) -> list[str]:
    glue = tmp_path / "glue"
    glue.mkdir()
    for split, n in (("train", 10), ("valid", 3)):
        rows = [{"sentence1": f"s{i}", "sentence2": "t", "label": i % 2, "idx": i} for i in range(n)]
        (glue / f"rte.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "model").mkdir()
    (tmp_path / "official").mkdir()
    return [str(tmp_path / "model"), "--official", str(tmp_path / "official"), "--official-python", "python3",
            "--glue", str(glue)]


def test_dry_run_gives_both_the_same_files_and_hyperparameters(bench, tmp_path, capsys):
    bench.main(layout(tmp_path) + ["--dry-run", "--train-examples", "4", "--epochs", "3", "--lr", "1e-4",
                                   "--batch-size", "8", "--max-length", "128"])
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    official, ours = lines["official"].split(), lines["bl2"].split()
    value = lambda cmd, flag: cmd[cmd.index(flag) + 1]  # noqa: E731
    train = value(official, "--train_data")
    assert Path(value(ours, "--data-dir")) / "rte.train.jsonl" == Path(train)
    assert value(official, "--valid_data") == value(official, "--predict_data") == str(Path(train).parent /
                                                                                       "rte.valid.jsonl")
    for a, b in (("--learning_rate", "--lr"), ("--batch_size", "--batch-size"), ("--num_epochs", "--epochs"),
                 ("--sequence_length", "--max-length"), ("--seed", "--seed")):
        assert float(value(official, a)) == float(value(ours, b)), (a, b)
    assert value(ours, "--head") == "babylm2025" and value(ours, "--select") == "best"
    assert value(official, "--metric_for_valid") == "accuracy" and "--save" not in official
    assert not Path(train).exists()  # the cut copy lived in a temporary folder


def test_training_bars_of_the_official_log(bench, tmp_path):
    log = tmp_path / "official.log"
    bar = lambda done, total, elapsed: f"\r{done}/{total} [{elapsed}<00:01, 1.0it/s]"  # noqa: E731
    # 2 epochs of 3 steps: the epoch-2 bar starts at step 3; validation bars count 2 batches
    log.write_text("".join([bar(0, 6, "00:00"), bar(3, 6, "00:07"), bar(3, 6, "00:07"), "\n",
                            bar(0, 2, "00:00"), bar(2, 2, "00:01"), "\n",
                            bar(3, 6, "00:00"), bar(6, 6, "01:02"), "\n", bar(0, 2, "00:00"), bar(2, 2, "00:02"),
                            "\n", bar(2, 2, "00:01"), "\n", bar(0, 2, "00:00"), bar(2, 2, "00:01")]))
    assert bench.official_epochs(log, 3, 2) == [7.0, 62.0]
    assert bench.official_epochs(log, 3, 1) == []  # not the layout of a 1-epoch run: no number, not a wrong one


def test_bad_arguments_stop_it(bench, tmp_path, capsys):
    args = layout(tmp_path)
    with pytest.raises(SystemExit) as e:
        bench.main(args + ["--dry-run", "--epochs", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        bench.main([str(tmp_path / "nope")] + args[1:] + ["--dry-run"])
    assert e.value.code == 2 and "not found" in capsys.readouterr().err
