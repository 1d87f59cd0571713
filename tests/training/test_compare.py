"""``flyby compare``: learning curves of training runs read from their folders, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flyby.cli import main
from flyby.training.compare import CompareError, format_table, learning_curves_png, read_run

PROGRESS_HEAD = "env_steps,wall_s,fps,ep_rew_mean,ep_len_mean,targets_found_mean\n"
EVAL_HEAD = "env_steps,wall_s,mean_return,std_return,targets_found_mean,crashes,geofence_exits\n"


def fake_run(folder, *, drones=32, epochs=4, finished=True, evals=((500, 5.0, 10.0, 4.0, 3.0),)):
    """A run folder as flyby train writes it: rollouts every 100 env steps, evaluations as given."""
    folder.mkdir(parents=True)
    rows = [f"{100 * (i + 1)},{0.1 * (i + 1)},1000,{'' if i == 0 else i * 1.5},{i},{i}" for i in range(8)]
    (folder / "progress.csv").write_text(PROGRESS_HEAD + "\n".join(rows) + "\n")
    (folder / "eval.csv").write_text(
        EVAL_HEAD + "".join(f"{s},{w},{m},{sd},{t},0,0\n" for s, w, m, sd, t in evals)
    )
    trainer = {
        "algorithm": "PPO",
        "num_drones": drones,
        "batch_size": 2048,
        "torch_threads": 1,
        "update_torch_threads": 2,
        "eval_episodes": 16,
        "ppo": {"n_steps": 64, "n_epochs": epochs, "net_arch": [128, 128]},
    }
    (folder / "train_config.json").write_text(json.dumps({"trainer": trainer, "env": {}, "hash": "x"}))
    if finished:
        (folder / "model.json").write_text(json.dumps({"steps_per_s": 20000.0, "learner_share": 0.6}))
    return folder


def test_read_run_gives_curves_settings_and_the_interval(tmp_path):
    run = read_run(fake_run(tmp_path / "fast", drones=128), "fast")
    assert run.label == "fast" and run.settings["drones"] == 128 and run.settings["threads"] == "1/2"
    np.testing.assert_array_equal(run.env_steps, np.arange(1, 9) * 100)
    assert np.isnan(run.train_return[0]) and run.train_return[1] == 1.5  # empty cell: no episode yet
    assert run.eval_return.tolist() == [10.0]
    assert run.eval_ci95[0] == pytest.approx(1.959964 * 4.0 / 4.0, rel=1e-6)  # z * std / sqrt(16)
    assert run.steps_per_s == 20000.0 and run.learner_share == 0.6


def test_a_running_run_and_one_without_evaluations_still_compare(tmp_path):
    running = read_run(fake_run(tmp_path / "a", finished=False, evals=()))
    assert np.isnan(running.steps_per_s) and running.eval_return.size == 0
    done = read_run(fake_run(tmp_path / "b"))
    table = format_table([running, done])
    assert "running" in table and "no evaluation yet" in table and "+10.0 +- 2.0" in table
    png = learning_curves_png([running, done], title="t")
    assert png.startswith(b"\x89PNG")


def test_cli_prints_the_table_and_writes_the_png(tmp_path, capsys):
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b", epochs=2)
    out = tmp_path / "plots" / "curves.png"
    assert (
        main(["compare", str(a), str(b), "--label", "packaged", "--label", "two epochs", "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert "packaged" in text and "two epochs" in text and "20,000" in text
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: (f / "progress.csv").unlink(), r"progress.csv does not exist"),
        (lambda f: (f / "progress.csv").write_text(""), r"progress.csv is empty"),
        (
            lambda f: (f / "progress.csv").write_text("steps,x\n1,2\n"),
            r"no column env_steps, wall_s, ep_rew_mean",
        ),
        (lambda f: (f / "progress.csv").write_text(PROGRESS_HEAD + "1,2,3,abc,5,6\n"), r"line 2.*'abc'"),
        (
            lambda f: (f / "progress.csv").write_text(PROGRESS_HEAD + "1,2,3\n"),
            r"line 2: 3 cells, the header has 6",
        ),
        (lambda f: (f / "train_config.json").write_text("{}"), r"train_config.json is missing or not"),
        (lambda f: (f / "model.json").write_text("{"), r"model.json is not JSON"),
    ],
)
def test_bad_run_folders_are_refused_by_name(tmp_path, damage, match):
    folder = fake_run(tmp_path / "run")
    damage(folder)
    with pytest.raises(CompareError, match=match):
        read_run(folder)


def test_cli_refuses_a_missing_folder_and_a_label_count_mismatch(tmp_path, capsys):
    run = fake_run(tmp_path / "a")
    assert main(["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "c.png")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["compare", str(run), "--label", "x", "--label", "y", "--out", str(tmp_path / "c.png")]) == 2
    assert "2 --label for 1 runs" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()
