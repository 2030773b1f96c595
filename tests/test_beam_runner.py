"""Flag parsing of the CLI: our flags become JobOptions, every other flag goes to Beam."""

from __future__ import annotations

import pytest

from beam_runner import DEFAULT_RUNNER, parse
from planning.options import SAMPLES_DATA_DIR


def test_defaults_read_the_samples_and_name_the_local_runner() -> None:
    options, beam_args = parse(["--dataset=atari"])
    assert options.data_dir == SAMPLES_DATA_DIR
    assert options.output_dir == "out/atari"
    assert options.tasks == ("*",)
    assert beam_args == [f"--runner={DEFAULT_RUNNER}"]


def test_unknown_flags_pass_through_to_beam_unchanged() -> None:
    options, beam_args = parse([
        "--dataset=atari", "--tasks=Pong*, Breakout*", "--runner=DataflowRunner", "--project=p",
        "--region=us-central1", "--num_workers=8", "--setup_file=./pyproject.toml", "--seed=3",
    ])
    assert options.tasks == ("Pong*", "Breakout*") and options.seed == 3
    assert beam_args == ["--runner=DataflowRunner", "--project=p", "--region=us-central1",
                         "--num_workers=8", "--setup_file=./pyproject.toml"]


def test_rlds_dataset_gets_a_plain_default_output_dir() -> None:
    options, _ = parse(["--dataset=rlds:/data/robot"])
    assert options.output_dir == "out/rlds__data_robot"


def test_bad_values_are_value_errors_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--prompt_fraction"):
        parse(["--dataset=atari", "--prompt_fraction=2"])


def test_a_full_disk_deep_in_beam_is_found_and_named() -> None:
    import errno

    from beam_runner import no_space_message
    from formats.files import no_space_error

    assert no_space_message(no_space_error("/out/x.parquet")) == "no space left on /out/x.parquet"
    wrapped = RuntimeError("formats.files.NoSpaceLeftError: no space left on /out/_tmp/a b.parquet "
                           "[while running 'Pass2/Write']\nTraceback ...")
    assert no_space_message(wrapped) == "no space left on /out/_tmp/a b.parquet"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/out/s.json")
        except OSError as e:
            raise RuntimeError("stage failed") from e
    except RuntimeError as e:
        assert no_space_message(e) == "no space left on /out/s.json"
    assert no_space_message(ValueError("bad value")) is None


def test_main_prints_a_full_disk_as_one_line_and_exits_1(monkeypatch, capsys) -> None:
    # Issue 13, defect 13: not a Beam traceback.
    import beam_runner
    from pipeline import job

    def full(*args, **kwargs):
        raise RuntimeError("NoSpaceLeftError: no space left on /out/_staging/x/stats/stats.json "
                           "[while running 'Outputs/Stats/WriteStats']\nTraceback (most recent call last): ...")

    monkeypatch.setattr(job, "run_job", full)
    assert beam_runner.main(["--dataset=atari", "--output_dir=/out"]) == 1
    assert capsys.readouterr().err == "error: no space left on /out/_staging/x/stats/stats.json\n"


DATAFLOW = ["--runner=DataflowRunner", "--project=test-project", "--region=us-central1",
            "--temp_location=gs://b/tmp", "--dry_run=True"]


def test_a_remote_runner_with_local_paths_is_refused_in_one_line_before_anything(tmp_path, capsys) -> None:
    # Issue 14: Dataflow's workers cannot see the launcher's disk; the job used to be built and
    # submitted with these paths, to fail on every worker (or write where nobody looks).
    import beam_runner

    output = tmp_path / "out"
    assert beam_runner.main(["--dataset=atari", f"--output_dir={output}", *DATAFLOW]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: DataflowRunner runs the job on workers that cannot see this machine's disk, but "
        f"--data_dir={SAMPLES_DATA_DIR} (not given: the bundled samples); --output_dir={output} are on it: "
        "give paths on shared storage, e.g. --data_dir=gs://MY_BUCKET/...")
    assert not output.exists()  # refused before the claim


def test_the_local_runner_takes_local_paths(monkeypatch, capsys) -> None:
    import beam_runner
    from pipeline import job

    seen = []
    monkeypatch.setattr(job, "plan_work", lambda *a, **k: seen.append(k["data_dir"]) or (_ for _ in ()).throw(
        ValueError("planned")))
    assert beam_runner.main(["--dataset=atari", "--output_dir=out/x", "--runner=DirectRunner"]) == 1
    assert seen == [SAMPLES_DATA_DIR] and capsys.readouterr().err == "error: planned\n"


def test_a_remote_dask_cluster_with_local_paths_is_refused_and_a_loopback_one_is_not(tmp_path, monkeypatch,
                                                                                     capsys) -> None:
    # A Dask scheduler on another host may place work on machines without this disk; one on
    # 127.0.0.1 (what tests/engines runs) runs every worker here, where local paths work.
    import beam_runner
    from pipeline import job

    output = tmp_path / "out"
    remote = ["--runner=DaskRunner", "--dask_client_address=tcp://10.1.2.3:8786"]
    assert beam_runner.main(["--dataset=atari", f"--output_dir={output}", *remote]) == 1
    assert "DaskRunner runs the job on workers that cannot see this machine's disk" in capsys.readouterr().err
    monkeypatch.setattr(job, "plan_work", lambda *a, **k: (_ for _ in ()).throw(ValueError("planned")))
    loopback = ["--runner=DaskRunner", "--dask_client_address=tcp://127.0.0.1:8786"]
    assert beam_runner.main(["--dataset=atari", f"--output_dir={output}", *loopback]) == 1
    assert capsys.readouterr().err == "error: planned\n"  # past the check, into planning


# --- Issue 17: a quiet, helpful command line. ---


def test_help_gives_every_flag_help_text_and_its_default(monkeypatch) -> None:
    import argparse

    from beam_runner import build_parser

    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    parser = build_parser()
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, action.option_strings
        if action.default is not None:
            assert f"{action.help} (default: {action.default})" in text, action.option_strings
        else:  # computed defaults are said in words
            assert "not given" in action.help or action.required, action.option_strings


def test_a_mistyped_flag_is_an_error_with_a_did_you_mean(capsys) -> None:
    import beam_runner

    assert beam_runner.main(["--dataset=atari", "--taks=Pong*", "--output_dir=/nowhere"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown flag --taks (did you mean --tasks?): neither this job nor Apache Beam defines it "
        "(--help lists the job's flags)\n")


def test_abbreviations_of_our_flags_are_not_taken() -> None:
    _, beam_args = parse(["--dataset=atari", "--task=Pong*"])
    assert "--task=Pong*" in beam_args  # and so reported as unknown, not silently read as --tasks


def test_beams_type_hint_notes_are_dropped_and_nothing_else(caplog) -> None:
    import logging

    from beam_runner import configure_logging

    configure_logging("INFO")
    hints = logging.getLogger("apache_beam.typehints.native_type_compatibility")
    with caplog.at_level(logging.INFO):
        hints.info('Converting string literal type hint to Any: "%s"', "beam.PCollection")
        hints.warning("a real warning")
        logging.getLogger("apache_beam").info('Converting string literal type hint to Any: "x"')
    assert [r.getMessage() for r in caplog.records] == [
        "a real warning", 'Converting string literal type hint to Any: "x"']


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, capsys) -> None:
    import beam_runner

    blocker = tmp_path / "out"
    blocker.write_text("not a directory")
    assert beam_runner.main(["--dataset=atari", f"--output_dir={blocker}"]) == 1
    assert capsys.readouterr().err == (
        f"error: --output_dir={blocker}: cannot write an output directory there (File exists: {blocker}); "
        "give a directory you can write\n")


def test_the_summary_is_a_table_per_task_then_the_output_and_next_commands() -> None:
    from beam_runner import summary_table

    records = [{"dataset": "atari", "task": "rlu_atari/Pong_run_1", "episodes_read": 12, "kept": 1,
                "dropped": 11, "rejected": 0, "sequences": 20, "sequence_tokens": 19000}]
    assert summary_table(records, "out/atari").splitlines() == [
        "task                        read  kept  dropped  rejected  sequences  tokens",
        "atari/rlu_atari/Pong_run_1    12     1       11         0         20   19000",
        "",
        "output: out/atari",
        "next:   gato-audit out/atari    # verify it, and every task's filter statistics",
        "        out/atari/report.html    # the auditors' report (open in a browser)",
    ]


def test_vision_language_tasks_get_their_own_columns_after_the_agent_tasks() -> None:
    from beam_runner import summary_table

    agent = {"dataset": "atari", "task": "Pong", "episodes_read": 12, "kept": 1, "dropped": 11, "rejected": 0,
             "sequences": 20, "sequence_tokens": 19000}
    vl = {"dataset": "coco_captions", "task": "coco_captions", "records_read": 5, "records_kept": 3,
          "records_rejected": 2, "units": 14, "rows": 3, "tokens": 2890}
    assert summary_table([vl], "out/coco").splitlines()[:2] == [
        "task                         read  kept  rejected  units  rows  tokens",
        "coco_captions/coco_captions     5     3         2     14     3    2890",
    ]
    assert summary_table([vl, agent], "out/mix").splitlines()[:5] == [
        "task        read  kept  dropped  rejected  sequences  tokens",
        "atari/Pong    12     1       11         0         20   19000",
        "",
        "task                         read  kept  rejected  units  rows  tokens",
        "coco_captions/coco_captions     5     3         2     14     3    2890",
    ]
