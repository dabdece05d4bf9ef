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
