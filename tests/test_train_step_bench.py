"""`ganfast bench --op train_step`: the cases run, and the README table is built from their rows."""

import json

import torch

from ganfast.bench import cases, report, train_step


def test_train_step_cases_run_side_by_side_and_fill_the_readme_table(tmp_path):
    device = torch.device("cpu")
    all_cases = train_step.cases(list(train_step.MODELS), [2], [torch.float32], device,
                                 backends=("eager", "ganfast"))
    rows = train_step.add_steps_per_s(cases.run("train_step", all_cases, device,
                                                train_step.first_call_fails))
    assert [(r["mode"], r["backend"]) for r in rows] == [
        ("dcgan64 wgan-gp", "eager"), ("dcgan64 wgan-gp", "ganfast"),
        ("sngan32 hinge", "eager"), ("sngan32 hinge", "ganfast")]
    for row in rows:
        assert "skipped" not in row, row
        assert row["steps_per_s"] > 0 and row["speedup"] > 0
    results = tmp_path / "rows.jsonl"
    cases.write_jsonl(rows, results)
    readme = tmp_path / "README.md"
    readme.write_text("top\n" + "\n".join(report.TRAIN_STEP_MARKERS) + "\nrest\n"
                      + f"{report.BEGIN}\n{report.END}\n")
    report.write_report([results], tmp_path / "perf", readme=readme)
    text = readme.read_text()
    table = text.split(report.TRAIN_STEP_MARKERS[0])[1].split(report.TRAIN_STEP_MARKERS[1])[0]
    dcgan = next(line for line in table.splitlines() if "dcgan64 wgan-gp" in line)
    eager, fast = (json.loads(line) for line in results.read_text().splitlines()[:2])
    assert f"{eager['median_ms'] / fast['median_ms']:.2f}x" in dcgan
    assert "CPU" in dcgan and text.endswith(f"{report.END}\n")


def test_a_failing_first_step_is_recorded_as_skipped():
    def boom():
        raise RuntimeError("double backward is not supported\nmore detail")

    case = cases.Case("m", {"shape": [1], "dtype": "float32"}, "compile", boom, None)
    assert train_step.first_call_fails(case) == "RuntimeError: double backward is not supported"


def test_a_first_step_failing_with_an_empty_message_is_recorded_by_its_type():
    # the reason was the first line of the message: an error without one raised IndexError
    def boom():
        raise NotImplementedError

    case = cases.Case("m", {"shape": [1], "dtype": "float32"}, "compile", boom, None)
    assert train_step.first_call_fails(case) == "NotImplementedError"


def test_quick_times_the_batch_sizes_asked_for(monkeypatch):
    # --quick takes one default batch size (2 on CPU); `--batch 8 --quick` ran batch 2 instead.
    from ganfast.cli import main

    timed = []
    monkeypatch.setattr(train_step, "cases", lambda models, batches, *a: timed.append(batches) or [])
    monkeypatch.setattr(cases, "run", lambda *a, **k: [])  # nothing timed: status 1, no rows
    for batch in (["--batch", "8"], ["--batch", "8", "--batch", "4"], []):
        assert main(["bench", "--op", "train_step", "--device", "cpu", "--quick", *batch]) == 1
    assert timed == [[8], [8, 4], [2]]
