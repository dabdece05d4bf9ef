"""The benchmark report: markdown tables, plots and the README splice, from synthetic rows."""

import json
import random
import re
import struct

import pytest

from ganfast.bench import report

GPU = "NVIDIA H100 80GB HBM3"
ENV_GPU = {"device": GPU, "torch": "2.11.0", "triton": "3.5.0", "cuda": "12.8", "date": "2026-01-02"}
ENV_CPU = {"device": "cpu", "torch": "2.11.0", "triton": None, "cuda": None, "date": "2026-01-03"}


def row(mode, backend, ms, env=ENV_GPU, shape=(64, 3, 64, 64), dtype="float16", eager_ms=None,
        compile_ms=None, frac=None, **extra):
    return {"op": "gradient_penalty", "mode": mode, "shape": list(shape), "dtype": dtype,
            "backend": backend, "median_ms": ms, "gbps": None if frac is None else frac * 3000,
            "frac_of_copy": frac, "speedup": round(eager_ms / ms, 2) if eager_ms else None,
            "speedup_vs_compile": round(compile_ms / ms, 2) if compile_ms else None,
            "copy_gbps": 3000.0, **env, **extra}


def overhead(backend, us, eager_us):
    return {**row("overhead", backend, None, shape=(4, 3, 8, 8), dtype="float32"),
            "case": "per_sample_norm", "us_per_call": us, "speedup": round(eager_us / us, 2)}


def synthetic_rows():
    return [
        row("fwd", "eager", 0.5, eager_ms=0.5),
        row("fwd", "compile", 0.25, eager_ms=0.5, compile_ms=0.25),
        row("fwd", "triton", 0.2, eager_ms=0.5, compile_ms=0.25, frac=0.873),
        row("fwd", "cuda", 0.125, eager_ms=0.5, compile_ms=0.25, frac=0.9),
        row("interp", "eager", 1.0, dtype="float32", eager_ms=1.0),
        row("interp", "triton", 0.4, dtype="float32", eager_ms=1.0, frac=0.75),
        row("interp", "cuda", 0.5, dtype="float32", eager_ms=1.0, frac=0.6),
        overhead("eager", 30.0, 30.0),
        overhead("cuda", 12.5, 30.0),
        {k: v for k, v in row("bwd", "triton", 0).items() if k in ("op", "mode", "shape", "dtype",
                                                                  "backend", *ENV_GPU)}
        | {"skipped": "triton is not installed"},
        row("fwd", "eager", 0.05, env=ENV_CPU, shape=(4, 3, 8, 8), dtype="float32", eager_ms=0.05),
        row("fwd", "torch", 0.04, env=ENV_CPU, shape=(4, 3, 8, 8), dtype="float32", eager_ms=0.05),
    ]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def table_lines(text):
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| mode")]


def test_gpu_table_rows_in_order_with_speedups_and_eager_time():
    text = report.markdown(synthetic_rows())
    gpu = text[:text.index("### gradient_penalty · cpu")]
    assert table_lines(gpu) == [
        "| overhead: per_sample_norm | 4x3x8x8 | float32 | cuda | 12.5 us | 30 us | 2.40x | – | – |",
        "| interp | 64x3x64x64 | float32 | cuda | 0.5 | 1 | 2.00x | – | 60.0% |",
        "| interp | 64x3x64x64 | float32 | triton | 0.4 | 1 | 2.50x | – | 75.0% |",
        "| fwd | 64x3x64x64 | float16 | cuda | 0.125 | 0.5 | 4.00x | 2.00x | 90.0% |",
        "| fwd | 64x3x64x64 | float16 | triton | 0.2 | 0.5 | 2.50x | 1.25x | 87.3% |",
    ]
    # The baselines are columns, never rows of their own.
    assert not any(" eager |" in line or " compile |" in line for line in table_lines(text))


def test_headings_name_device_versions_and_date_and_label_cpu():
    text = report.markdown(synthetic_rows())
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings == [
        f"### gradient_penalty · {GPU} · torch 2.11.0 · triton 3.5.0 · CUDA 12.8 · 2026-01-02",
        # triton and torch's CUDA build play no part in a CPU figure
        "### gradient_penalty · cpu (CPU: the fallback path only, not a GPU figure) · torch 2.11.0 "
        "· 2026-01-03",
    ]
    cpu = text[text.index("### gradient_penalty · cpu"):]
    assert table_lines(cpu) == ["| fwd | 4x3x8x8 | float32 | torch | 0.04 | 0.05 | 1.25x | – | – |"]


def test_each_cpu_machine_is_its_own_section_and_train_step_row():
    # The same case timed on two CPUs: neither run supersedes the other (their speedups differ
    # by machine), and rows from before the cpu field stay in a plain "cpu" section.
    avx512 = {**ENV_CPU, "cpu": "Intel Xeon, AVX512, 2 threads"}
    avx2 = {**ENV_CPU, "cpu": "AMD EPYC, AVX2, 2 threads"}
    rows = synthetic_rows() + [
        row("fwd", backend, ms, env=env, shape=(4, 3, 8, 8), dtype="float32", eager_ms=eager)
        for env, eager, fast in ((avx512, 0.05, 0.025), (avx2, 0.09, 0.03))
        for backend, ms in (("eager", eager), ("torch", fast))]
    text = report.markdown(rows)
    headings = [line.split(" (CPU:")[0].split(" · torch")[0] for line in text.splitlines()
                if line.startswith("### ")]
    assert headings == [f"### gradient_penalty · {GPU}", "### gradient_penalty · cpu",
                        "### gradient_penalty · cpu: AMD EPYC, AVX2, 2 threads",
                        "### gradient_penalty · cpu: Intel Xeon, AVX512, 2 threads"]
    sections = text.split("### ")[1:]
    assert [table_lines(s) for s in sections[1:]] == [
        ["| fwd | 4x3x8x8 | float32 | torch | 0.04 | 0.05 | 1.25x | – | – |"],
        ["| fwd | 4x3x8x8 | float32 | torch | 0.03 | 0.09 | 3.00x | – | – |"],
        ["| fwd | 4x3x8x8 | float32 | torch | 0.025 | 0.05 | 2.00x | – | – |"]]
    steps = [{**r, "op": "train_step", "mode": "dcgan64 wgan-gp",
              "backend": "ganfast" if r["backend"] == "torch" else r["backend"]}
             for r in rows if r["device"] == "cpu"]
    table = report.train_step_table(steps).splitlines()[2:]
    assert [line.split(" | ")[0] for line in table] == [
        "| CPU (not a GPU figure)", "| CPU: AMD EPYC, AVX2, 2 threads (not a GPU figure)",
        "| CPU: Intel Xeon, AVX512, 2 threads (not a GPU figure)"]
    assert [line.split(" | ")[6] for line in table] == ["1.25x", "3.00x", "2.00x"]


def test_skipped_rows_are_listed_not_tabled():
    text = report.markdown(synthetic_rows())
    assert "Skipped:\n- bwd 64x3x64x64 float16 triton: triton is not installed\n" in text
    assert not any("| bwd |" in line for line in text.splitlines())


def test_ordering_does_not_depend_on_row_order():
    rows = synthetic_rows()
    expected = report.markdown(rows)
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert report.markdown(shuffled) == expected


def test_a_later_run_supersedes_an_earlier_one():
    rows = synthetic_rows() + [row("fwd", "cuda", 0.1, eager_ms=0.5, compile_ms=0.25, frac=0.95,
                                   date="2026-02-01")]
    text = report.markdown(rows)
    assert "| fwd | 64x3x64x64 | float16 | cuda | 0.1 | 0.5 | 5.00x | 2.50x | 95.0% |" in text
    assert "| cuda | 0.125 |" not in text
    assert "· 2026-01-02, 2026-02-01\n" in text
    # A run that supersedes every row, skipped ones included, leaves only its own date.
    rerun = [{**r, "date": "2026-03-01"} for r in synthetic_rows()]
    text = report.markdown(synthetic_rows() + rerun)
    assert "2026-01-02" not in text and "2026-01-03" not in text and "· 2026-03-01\n" in text
    # and a case skipped before and timed now is tabled, no longer listed as skipped
    timed_now = row("bwd", "triton", 0.3, eager_ms=0.6, date="2026-03-01")
    text = report.markdown(synthetic_rows() + [timed_now])
    assert "Skipped:" not in text.split("### gradient_penalty · cpu")[0]
    assert "| bwd | 64x3x64x64 | float16 | triton | 0.3 |" in text
    # the latest date wins, whichever file or line comes first
    assert report.markdown([timed_now] + synthetic_rows()) == text


def test_load_rows_reads_files_in_order(tmp_path):
    rows = synthetic_rows()
    a = write_jsonl(tmp_path / "a.jsonl", rows[:3])
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join(json.dumps(r) for r in rows[3:]) + "\n\n")  # a trailing blank line is fine
    assert report.load_rows([a, b]) == rows


@pytest.mark.parametrize("bad, message", [
    ('{"op": "gradient_penalty", "mode": ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"op": "gradient_penalty"}', "row lacks mode, shape, dtype, backend, device"),
])
def test_load_rows_names_file_and_line_of_a_malformed_row(tmp_path, bad, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(synthetic_rows()[0]) + "\n\n" + bad + "\n")
    with pytest.raises(ValueError, match=rf"rows\.jsonl:3: {message}") as info:
        report.load_rows([path])
    assert str(info.value).startswith(f"{path}:3: ")


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_one_png_per_device_and_op(tmp_path):
    pytest.importorskip("matplotlib")
    paths = report.plot(synthetic_rows(), tmp_path / "plots")
    assert [p.name for p in paths] == ["gradient_penalty-nvidia-h100-80gb-hbm3.png",
                                       "gradient_penalty-cpu.png"]
    for path in paths:
        width, height = png_size(path)
        assert width > 0 and height > 0
        import matplotlib.image

        assert matplotlib.image.imread(path).shape[:2] == (height, width)
    # More groups make a taller figure, so labels stay readable.
    assert png_size(paths[0])[1] > png_size(paths[1])[1]


README = ("# ganfast\n\nintro\n\n<!-- bench-report:begin -->\nold table\nold plot\n"
          "<!-- bench-report:end -->\n\ntail\n")


def test_spliced_replaces_only_between_markers():
    once = report.spliced(README, "new section")
    assert once == ("# ganfast\n\nintro\n\n<!-- bench-report:begin -->\nnew section\n"
                    "<!-- bench-report:end -->\n\ntail\n")
    # the markers survive, so a second splice works
    assert report.spliced(once, "again\n") == README.replace("old table\nold plot\n", "again\n")


@pytest.mark.parametrize("text", [
    "# no markers\n",
    "<!-- bench-report:begin -->\nonly the start\n",
    "<!-- bench-report:end -->\nx\n<!-- bench-report:begin -->\n",
])
def test_spliced_refuses_without_both_markers_in_order(text):
    with pytest.raises(ValueError, match="README.md: the markers .* are missing"):
        report.spliced(text, "new", name="README.md")


def test_write_report_links_plots_relative_to_each_file(tmp_path):
    pytest.importorskip("matplotlib")
    rows = write_jsonl(tmp_path / "rows.jsonl", synthetic_rows())
    readme = tmp_path / "README.md"
    readme.write_text(README)
    out = report.write_report([rows], tmp_path / "benchmarks" / "results", readme=readme)

    png = "gradient_penalty-nvidia-h100-80gb-hbm3.png"
    assert out["markdown"] == tmp_path / "benchmarks" / "results" / "report.md"
    assert [p.name for p in out["plots"]] == [png, "gradient_penalty-cpu.png"]
    md = out["markdown"].read_text()
    assert md.startswith("# ganfast benchmark report\n")
    assert f"![gradient_penalty speedup on {GPU}]({png})" in md
    spliced = readme.read_text()
    assert f"![gradient_penalty speedup on {GPU}](benchmarks/results/{png})" in spliced
    assert "| fwd | 64x3x64x64 | float16 | cuda | 0.125 | 0.5 | 4.00x | 2.00x | 90.0% |" in spliced
    assert spliced.startswith("# ganfast\n\nintro\n\n<!-- bench-report:begin -->\n### gradient_penalty")
    assert spliced.endswith("<!-- bench-report:end -->\n\ntail\n")


def test_layouts_are_separate_groups_with_their_activation_memory():
    # upsample_conv rows differ only by layout; each layout keeps its own eager baseline.
    # Two blocks with one input shape (different output channels) are separate groups too.
    rows = [row("fwd+bwd", backend, ms, eager_ms=eager, layout=layout, saved_mb=saved, block=block)
            for block in ("b-16", "b-32")
            for layout, eager in (("nchw", 4.0), ("channels_last", 3.0))
            for backend, ms, saved in (("eager", eager, 2.0), ("torch", 2.0, 0.0))]
    expected = [f"| fwd+bwd: {block} ({layout}) | 64x3x64x64 | float16 | torch | 2 | {eager} | "
                f"{speedup} | – | – | 0 | 2 |"
                for block in ("b-16", "b-32")
                for layout, eager, speedup in (("channels_last", 3, "1.50x"), ("nchw", 4, "2.00x"))]
    assert table_lines(report.markdown(rows)) == expected


def test_matrix_throughput_column_where_rows_have_it():
    rows = [row("fwd", "eager", 4.0, eager_ms=4.0, frac_of_matrix=0.2),
            row("fwd", "torch", 2.0, eager_ms=4.0, frac_of_matrix=0.175)]
    md = report.markdown(rows)
    assert "| of copy bandwidth | of matrix throughput |" in md
    assert table_lines(md) == ["| fwd | 64x3x64x64 | float16 | torch | 2 | 4 | 2.00x | – | – | 17.5% |"]
    assert "of matrix throughput" not in report.markdown([row("fwd", "torch", 2.0, eager_ms=4.0)])


def test_report_refuses_bad_input_before_writing_anything(tmp_path, capsys):
    from ganfast.cli import main

    readme = tmp_path / "README.md"
    readme.write_text(README)  # bench-report markers, but no train-step markers
    good = write_jsonl(tmp_path / "good.jsonl", synthetic_rows())
    steps = write_jsonl(tmp_path / "steps.jsonl", [dict(
        op="train_step", mode="dcgan64", shape=[16, 3, 64, 64], dtype="float32", backend=b,
        device="cpu", median_ms=ms, date="2026-12-03") for b, ms in (("eager", 2.0), ("ganfast", 1.0))])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    (tmp_path / "afile").write_text("")
    out = tmp_path / "out"
    cases = [
        ([str(empty)], [], "no result rows in .*empty.jsonl: nothing to report"),
        ([str(tmp_path / "missing.jsonl")], [], "missing.jsonl: No such file"),
        ([str(tmp_path)], [], "Is a directory"),
        ([str(good), str(steps)], ["--readme", str(readme)], "the markers <!-- train-step:begin -->"),
        ([str(good)], ["--readme", str(tmp_path / "NOPE.md")], "NOPE.md: No such file"),
    ]
    for files, extra, message in cases:
        assert main(["bench", "--report", *files, "--out", str(out), *extra]) == 2, files
        assert re.search(message, capsys.readouterr().err), message
        assert not out.exists() and readme.read_text() == README
    assert main(["bench", "--report", str(good), "--out", str(tmp_path / "afile")]) == 2
    assert "afile is a file; give the folder" in capsys.readouterr().err


@pytest.mark.parametrize("field, value, message", [
    ("shape", "2x3", "shape must be a list of positive integers, got '2x3'"),
    ("shape", [2, 0], "shape must be a list of positive integers"),
    ("speedup", "fast", "speedup must be a positive finite number or null, got 'fast'"),
    ("speedup", -2.0, "speedup must be a positive"),
    ("median_ms", float("nan"), "median_ms must be a positive finite number or null, got nan"),
    ("frac_of_copy", float("inf"), "frac_of_copy must be a non-negative finite number"),
    ("dtype", None, "dtype must be a non-empty string, got None"),
    ("date", 20261122, "date must be a string or null, got 20261122"),
    ("time", 5, "time must be a string or null, got 5"),
    # grouping keys: a number or a list among strings was a TypeError out of sorted() or dict
    ("case", 3, "case must be a string or null, got 3"),
    ("block", ["a"], "block must be a string or null, got ['a']"),
    ("layout", 5, "layout must be a string or null, got 5"),
])
def test_rows_the_report_cannot_show_truthfully_are_named_by_file_and_line(tmp_path, field, value,
                                                                           message):
    rows = synthetic_rows()
    rows[1][field] = value
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: {message}")):
        report.load_rows(path)


def test_train_step_table_takes_the_latest_date_whatever_the_file_order():
    def step(ms, date):
        return dict(op="train_step", mode="dcgan64", shape=[16, 3, 64, 64], dtype="float32",
                    backend="eager", device="cpu", median_ms=ms, date=date)

    newer, older = step(500.0, "2026-12-02"), step(250.0, "2026-11-23")
    for rows in ([newer, older], [older, newer]):
        assert "| 2.00 |" in report.train_step_table(rows)  # 1000 / 500 ms


def test_a_file_that_is_not_text_is_named(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: not a text file of JSON lines"):
        report.load_rows(path)


def test_quick_rows_are_marked_in_the_report_and_left_out_of_the_auto_order():
    from ganfast.bench import auto_table

    rows = synthetic_rows()
    rows[3] = {**rows[3], "quick": True}  # fwd cuda, GPU
    assert "| fwd | 64x3x64x64 | float16 | cuda (quick) | 0.125 |" in report.markdown(rows)
    ranked = auto_table.table(rows)["gradient_penalty"]
    full = auto_table.table([r for i, r in enumerate(rows) if i != 3])["gradient_penalty"]
    assert ranked["order"] == full["order"]


def test_a_write_that_fails_names_the_file_meant_not_a_temp_file(tmp_path, capsys):
    from ganfast.cli import main

    rows = write_jsonl(tmp_path / "rows.jsonl", synthetic_rows())
    (tmp_path / "out" / "report.md").mkdir(parents=True)  # a folder where report.md goes
    assert main(["bench", "--report", str(rows), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out' / 'report.md'}: Is a directory" in err and ".tmp" not in err


def test_groups_without_a_baseline_are_tabled_not_plotted(tmp_path):
    # FID's training-time distance has no eager baseline: a table row with no speedup, no empty
    # bar; a section with only such groups has no plot.
    pytest.importorskip("matplotlib")
    rows = synthetic_rows()
    no_baseline = [{**row("fwd", "torch", 2.0, env=ENV_CPU, shape=(5, 7)), "op": "fid"}]
    paths = report.plot(rows + no_baseline, tmp_path / "plots")
    assert [p.name for p in paths] == ["gradient_penalty-nvidia-h100-80gb-hbm3.png",
                                       "gradient_penalty-cpu.png"]
    table = report.markdown(rows + no_baseline)
    assert "| fwd | 5x7 | float16 | torch | 2 | – | – |" in table


def test_only_ops_with_backends_to_choose_enter_the_auto_order():
    # A metric's rows (fid, train_step) are ganfast against a baseline, not kernels to rank.
    from ganfast.bench import auto_table

    rows = synthetic_rows()
    metric = [{**r, "op": "fid"} for r in rows if r["device"] != "cpu"]
    assert set(auto_table.table(rows + metric)) == {"gradient_penalty"}


def test_auto_order_ranks_the_latest_rows_and_no_compile_times():
    # Older runs of a case must not outvote the newer one the report shows, and a ratio of
    # torch.compile times (spectral norm's "compile time" rows) is not a step's speedup.
    from ganfast.bench import auto_table

    def sn(mode, backend, speedup, date, time="10:00 UTC"):
        return {**row(mode, backend, 1.0, env={**ENV_GPU, "date": date, "time": time},
                      shape=(64, 3, 32, 32), dtype="float32"),
                "op": "spectral_norm", "speedup": speedup}

    old = [sn("fwd+bwd", "triton", 3.0, "2026-01-01"), sn("fwd+bwd", "cuda", 1.5, "2026-01-01")]
    new = [sn("fwd+bwd", "triton", 1.5, "2026-01-05"), sn("fwd+bwd", "cuda", 2.0, "2026-01-05")]
    again = [sn("fwd+bwd", "triton", 3.0, f"2026-01-0{day}") for day in (2, 3, 4)]
    order = auto_table.table(old + again + new)["spectral_norm"]["order"]
    assert order[:2] == ["cuda", "triton"]
    quick = [{**sn("fwd+bwd", "triton", 9.0, "2026-01-06"), "quick": True}]
    assert auto_table.table(new + quick)["spectral_norm"]["order"][:2] == ["cuda", "triton"]
    compile_time = [sn("compile time", "torch", 40.0, "2026-01-05")]
    order = auto_table.table(new + [sn("fwd+bwd", "torch", 1.1, "2026-01-05")] + compile_time)
    assert order["spectral_norm"]["order"] == ["cuda", "triton", "torch"]


def test_train_step_table_prefers_a_full_run_and_marks_quick_figures():
    def step(ms, date, backend="eager", shape=(16, 3, 64, 64), **extra):
        return dict(op="train_step", mode="dcgan64", shape=list(shape), dtype="float32",
                    backend=backend, device="cpu", median_ms=ms, date=date, **extra)

    full, quick = step(500.0, "2026-12-02"), step(100.0, "2026-12-03", quick=True)
    table = report.train_step_table([full, quick])
    assert "| 2.00 |" in table and "(quick)" not in table  # the full run's 1000 / 500 ms
    only_quick = report.train_step_table([step(100.0, "2026-12-03", shape=(2, 3, 64, 64),
                                               quick=True)])
    assert "dcgan64 (quick)" in only_quick


def test_rows_without_a_time_or_a_date_are_reported_not_a_traceback():
    # Rows the loader accepts (median_ms and date may be missing or null: older files, rows
    # written by hand) ended the README's train-step table and --auto-table in a traceback.
    from ganfast.bench import auto_table

    def step(backend, **fields):
        return dict(op="train_step", mode="dcgan64", shape=[16, 3, 64, 64], dtype="float32",
                    backend=backend, device="cpu", date="2026-12-03", **fields)

    for timed in ({}, {"median_ms": None}):
        table = report.train_step_table([step("eager", median_ms=2.0), step("ganfast", **timed)])
        assert "| 500.00 | – | – |" in table
    undated = [{k: v for k, v in r.items() if k != "date"} for r in synthetic_rows()]
    assert auto_table.table(undated)["gradient_penalty"]["date"] is None
    dated = [{**r, "date": None} for r in synthetic_rows()]
    dated[3]["date"] = "2026-01-05"  # fwd cuda
    assert auto_table.table(dated)["gradient_penalty"]["date"] == "2026-01-05"


def test_a_gbps_of_zero_from_an_earlier_version_is_read():
    # `ganfast bench` once wrote a small --shape's GB/s rounded to 0.0; the report shows
    # frac_of_copy, not GB/s, and refused the whole file for it.
    rows = synthetic_rows()
    rows[2] = {**rows[2], "gbps": 0.0, "copy_gbps": 0.0}
    assert report._row_problem(rows[2]) is None
    assert "| fwd | 64x3x64x64 | float16 | triton | 0.2 |" in report.markdown(rows)


def test_report_refuses_a_readme_it_may_not_write_before_writing_anything(tmp_path, monkeypatch,
                                                                            capsys):
    # The README is replaced last: a read-only one was found only after report.md and the
    # plots were written.
    import os

    from ganfast.cli import main

    readme = tmp_path / "README.md"
    readme.write_text(README)
    good = write_jsonl(tmp_path / "good.jsonl", synthetic_rows())
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == str(readme)
                        else real_access(p, m))
    out = tmp_path / "out"
    assert main(["bench", "--report", str(good), "--out", str(out), "--readme", str(readme)]) == 2
    assert f"--readme {readme}: the file (or its folder) may not be written" in capsys.readouterr().err
    assert not out.exists() and readme.read_text() == README


def test_a_grouping_field_of_the_wrong_kind_is_refused_not_a_traceback(tmp_path, capsys):
    from ganfast.cli import main

    rows = synthetic_rows()
    rows[0]["case"], rows[1]["case"] = 3, "x"  # were sorted together: str < int, TypeError
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    assert main(["bench", "--report", str(path), "--out", str(out)]) == 2
    assert f"{path}:1: case must be a string or null, got 3" in capsys.readouterr().err
    assert not out.exists()


def test_readme_help_names_both_pairs_of_markers_the_report_needs(tmp_path, capsys):
    # --readme with train_step rows needs the train-step markers as well: the help said only
    # "between its bench-report markers", and such a README was refused.
    from ganfast.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for marker in (*report.TRAIN_STEP_MARKERS, report.BEGIN, report.END):
        assert marker in help_text


def test_a_readme_that_is_a_symlink_is_updated_through_the_link(tmp_path, capsys):
    # `--readme README.md` where README.md links to the file the user keeps: the target gets the
    # new table (replaced whole, through a temporary file beside it), the link stays a link, and
    # the plots' links lead to the plots from the target's folder (they were relative to the
    # link's, one folder up: broken where the target is read).
    import re
    pytest.importorskip("matplotlib")
    import os

    from ganfast.cli import main

    target = tmp_path / "docs" / "README.md"
    target.parent.mkdir()
    target.write_text(README)
    target.chmod(0o640)
    link = tmp_path / "README.md"
    link.symlink_to(os.path.join("docs", "README.md"))
    good = write_jsonl(tmp_path / "good.jsonl", synthetic_rows())
    assert main(["bench", "--report", str(good), "--out", str(tmp_path / "out"),
                 "--readme", str(link)]) == 0, capsys.readouterr().err
    assert link.is_symlink() and os.readlink(link) == os.path.join("docs", "README.md")
    text = target.read_text()
    assert "old table" not in text and "| fwd | 64x3x64x64 | float16 | cuda | 0.125 |" in text
    assert text.startswith("# ganfast\n\nintro\n") and text.endswith("\n\ntail\n")
    assert (target.stat().st_mode & 0o777) == 0o640  # the target's permissions kept
    plots = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert plots and all((target.parent / p).resolve().is_file() for p in plots), plots
    assert sorted(p.name for p in target.parent.iterdir()) == ["README.md"]  # no temp file left


@pytest.mark.parametrize("read_only", ["target's folder", "link's folder"])
def test_a_symlinked_readme_is_checked_where_it_is_replaced(tmp_path, monkeypatch, capsys,
                                                            read_only):
    # The README is replaced through a temporary file in its target's folder: that folder is
    # the one checked before anything is written. The link's folder was checked instead, so a
    # read-only target folder was found only after report.md and the plots were written, and a
    # read-only folder holding only the link refused a README that could be written.
    pytest.importorskip("matplotlib")
    import os

    from ganfast.cli import main

    target = tmp_path / "docs" / "README.md"
    target.parent.mkdir()
    target.write_text(README)
    (tmp_path / "top").mkdir()
    link = tmp_path / "top" / "README.md"
    link.symlink_to(target)
    denied = str(target.parent if read_only == "target's folder" else link.parent)
    real_access = os.access
    # (the tests may run as root, whom the file system lets write anywhere)
    monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == denied and m & os.W_OK
                        else real_access(p, m))
    out = tmp_path / "out"
    status = main(["bench", "--report", str(write_jsonl(tmp_path / "good.jsonl", synthetic_rows())),
                   "--out", str(out), "--readme", str(link)])
    err = capsys.readouterr().err
    if read_only == "target's folder":
        assert status == 2
        assert (f"--readme {link} (a link to {target}): the file (or its folder) may not be "
                f"written") in err
        assert not out.exists() and target.read_text() == README
    else:
        assert status == 0, err
        assert link.is_symlink() and "old table" not in target.read_text()
