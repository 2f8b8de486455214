"""The one-command reproduction of the shipped FeatLoc weights (featloc_ros.training.reproduce): the chain of
commands, a tiny two-stage run that resumes and compares, and its errors."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from featloc_ros.training import reproduce as rp  # noqa: E402

TINY = ("data.corpus=null", "data.procedural_ratio=1.0", "data.crop_size=64", "train.steps=2",
        "train.batch_size=2", "train.warmup_steps=1", "train.num_threads=1", "train.checkpoint_every=1",
        "train.plot_every=1", "loss.points_per_image=32", "export.onnx=null")


def test_each_stage_starts_from_the_previous_output_in_the_run_directory(tmp_path):
    cmds = {s.name: rp.stage_command(s, tmp_path) for s in rp.STAGES}
    assert list(cmds) == ["featloc_v2", "featloc_v3", "featloc_v4", "featloc_v4_calibration", "featloc_v10"]
    assert "train.init_weights=null" in cmds["featloc_v2"]
    assert f"train.init_weights={tmp_path / 'featloc_v2.pt'}" in cmds["featloc_v3"]
    assert f"train.init_weights={tmp_path / 'featloc_v3.pt'}" in cmds["featloc_v4"]
    assert f"export.weights={tmp_path / 'featloc_v4.pt'}" in cmds["featloc_v4"]
    calib = cmds["featloc_v4_calibration"]
    assert calib[calib.index("--weights") + 1] == str(tmp_path / "featloc_v4.pt") and "--write" in calib
    refine = cmds["featloc_v10"]
    assert refine[refine.index("--weights") + 1] == str(tmp_path / "featloc_v4.pt")
    assert refine[refine.index("--out") + 1] == str(tmp_path / "featloc_v10.pt")
    # nothing is read from or written to models/: every path in the commands is under the run directory
    models = str(rp.MODELS_DIR)
    assert not any(models in arg for cmd in cmds.values() for arg in cmd)
    # every training override names a key of the config (a typo would be a silent no-op otherwise)
    from featloc_ros.training.train import full_config, load_config
    for s in rp.STAGES:
        if s.kind == "train":
            overrides = [a for a in cmds[s.name] if "=" in a and not a.startswith("-")]
            conf = full_config(load_config(rp.CONFIG_DIR / s.config, overrides))
            assert conf["export"]["weights"] == str(tmp_path / f"{s.weights}.pt")


def test_a_tiny_chain_runs_skips_finished_stages_and_compares_with_the_shipped_files(tmp_path):
    out, models = tmp_path / "run", tmp_path / "models"
    stages = [dataclasses.replace(s, extra=TINY) for s in rp.STAGES[:2]]
    said = []
    record = rp.reproduce(stages, out, models=models, say=said.append)
    assert all(record["stages"][s.name]["finished"] for s in stages)
    v2, v3 = torch.load(out / "featloc_v2.pt", weights_only=True), torch.load(out / "featloc_v3.pt", weights_only=True)
    # v3 started from v2: two AdamW steps move a weight by about 2 learning rates, a fresh initialisation by far more
    shared = [k for k in v2 if k in v3 and k.endswith("weight") and v2[k].ndim >= 2 and v2[k].shape == v3[k].shape]
    assert len(shared) > 10
    assert max(float((v3[k] - v2[k]).abs().max()) for k in shared) < 0.05
    assert {c["identical"] for c in record["comparison"].values()} == {None}  # nothing shipped to compare with
    assert "no shipped featloc_v3.pt" in record["comparison"]["featloc_v3"]["problem"]

    models.mkdir()
    shutil.copy(out / "featloc_v2.pt", models / "featloc_v2.pt")
    shipped_summary = json.loads((out / "featloc_v2_training.json").read_text())
    shipped_summary["train_time_s"] = 2 * 0.5  # the shipped run's pace: 0.5 s/step over its 2 steps
    (models / "featloc_v2_training.json").write_text(json.dumps(shipped_summary))
    changed = {k: v.clone() for k, v in v3.items()}
    key = next(k for k, v in changed.items() if v.is_floating_point())
    changed[key] += 0.25
    torch.save(changed, models / "featloc_v3.pt")
    said.clear()
    record = rp.reproduce(stages, out, models=models, say=said.append)
    assert sum("skipped" in line for line in said) == 2  # resumed: no stage ran again
    assert record["comparison"]["featloc_v2"]["identical"] is True
    c3 = record["comparison"]["featloc_v3"]
    assert c3["identical"] is False and c3["max_abs_diff_tensor"] == key
    assert c3["max_abs_diff"] == pytest.approx(0.25)
    table = (out / "reproduce.md").read_text()
    assert "| featloc_v2 | yes |" in table and "| featloc_v3 | no |" in table
    pace = record["comparison"]["featloc_v2"]["seconds_per_step"]
    assert pace["shipped"] == 0.5 and pace["reproduced"] > 0
    assert f"| {pace['reproduced']} (0.5) |" in table
    assert record["comparison"]["featloc_v3"]["seconds_per_step"]["shipped"] is None  # no shipped summary
    assert json.loads((out / "reproduce.json").read_text())["comparison"]["featloc_v3"]["identical"] is False
    # running the stages alone drops the earlier comparison instead of showing it as if it were current
    assert "comparison" not in rp.run_stages(stages, out, say=said.append)
    assert "| featloc_v3 | no |" not in (out / "reproduce.md").read_text()


def test_a_failing_stage_stops_the_chain_and_names_its_log(tmp_path):
    bad = rp.Stage("broken", "train", "broken", config="featloc_v2.yaml", extra=("train.steps=notanumber",))
    with pytest.raises(SystemExit, match="broken failed.*broken.log"):
        rp.run_stages([bad], tmp_path, say=lambda _: None)
    assert json.loads((tmp_path / "reproduce.json").read_text())["stages"]["broken"]["finished"] is False


def test_an_interrupted_stage_keeps_its_time_and_resumes(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rp.subprocess, "call", interrupted)
    stage = rp.Stage("featloc_v2", "train", "featloc_v2", config="featloc_v2.yaml")
    with pytest.raises(SystemExit, match="interrupted during featloc_v2.*again to resume"):
        rp.run_stages([stage], tmp_path, say=lambda _: None)
    first = json.loads((tmp_path / "reproduce.json").read_text())["stages"]["featloc_v2"]
    assert first["finished"] is False and first["runs"] == 1
    assert "| featloc_v2 | 0.0 (unfinished) | 1 |" in (tmp_path / "reproduce.md").read_text()  # table so far
    monkeypatch.setattr(rp.subprocess, "call", lambda *a, **k: 0)  # the second run completes the stage
    record = rp.run_stages([stage], tmp_path, say=lambda _: None)
    again = record["stages"]["featloc_v2"]
    assert again["finished"] and again["runs"] == 2 and again["seconds"] >= first["seconds"]


def test_a_corrupt_record_is_rejected_with_its_path(tmp_path):
    (tmp_path / "reproduce.json").write_text("{not json")
    with pytest.raises(SystemExit, match="reproduce.json is not valid JSON"):
        rp.run_stages([], tmp_path, say=lambda _: None)
    (tmp_path / "reproduce.json").write_text("[]")  # valid JSON, not a record
    with pytest.raises(SystemExit, match="reproduce.json has no 'stages' mapping"):
        rp.run_stages([], tmp_path, say=lambda _: None)


def test_a_corrupt_training_summary_is_rejected_with_its_path(tmp_path):
    summary = tmp_path / "featloc_v2_training.json"
    assert rp.seconds_per_step(summary) is None  # no summary: no time to compare
    summary.write_text(json.dumps({"train_time_s": 90.0, "steps": 60}))
    assert rp.seconds_per_step(summary) == 1.5
    summary.write_text('{"train_time_s": 90.')
    with pytest.raises(SystemExit, match="featloc_v2_training.json is not valid JSON"):
        rp.seconds_per_step(summary)
    summary.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="featloc_v2_training.json is not a training summary"):
        rp.seconds_per_step(summary)
