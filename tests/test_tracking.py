"""attnedu.governance.tracking: MLflow's runs and model registry, offline, in one folder (chapter 13).

The chapter's scenario runs once, in a fresh interpreter (:data:`SCENARIO`): there neither pytest
nor a CI variable turns MLflow's telemetry off by itself, HOME, TMPDIR and the working folder are
empty folders of their own, and an audit hook records every attempt to reach the network. Chapter
6's shipped checkpoint is logged as a run and registered as version 1 with the alias
``champion``, its float16 copy as version 2, and the alias moves to it; the scenario reports what
it saw, and each test below checks one part of it. (One interpreter for all: importing mlflow and
creating its tables take a few seconds.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnedu.governance import checkpoint_record
from attnedu.models import GPT, GPTConfig, SHIPPED_CHECKPOINT
from conftest import REPO

SCENARIO = r'''
import json, os, shutil, socket, sys
from pathlib import Path

NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg",
           "urllib.Request", "http.client.connect"}
calls = []
sys.addaudithook(lambda event, args: calls.append(f"{event} {args!r:.200}") if event in NETWORK else None)
one, two, spare = (Path(a) for a in sys.argv[1:4])
result = {}

from attnedu.governance import checkpoint_record, hash_file, open_tracking
from attnedu.corpus import CharTokenizer
from attnedu.models import GPT, GPTConfig, SHIPPED_CHECKPOINT
import torch

# ---- telemetry: would it be on here, and do the switches turn it off?
tracking = open_tracking(one, experiment="chapter-13")
import mlflow
from mlflow.telemetry import client as telemetry
from mlflow.telemetry import utils as telemetry_utils

result["telemetry_client"] = telemetry.get_telemetry_client() is not None
result["ci_or_testing"] = telemetry_utils._is_ci_env_or_testing()
result["disabled_with_switches"] = telemetry_utils.is_telemetry_disabled()
switches = {k: os.environ.pop(k) for k in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK") if k in os.environ}
result["disabled_without_switches"] = telemetry_utils.is_telemetry_disabled()
os.environ.update(switches)
tracking.close()
shutil.copy(one / "mlflow.db", spare)  # an empty registry, for the second folder below

# ---- the chapter: two versions, an alias that moves, a model loaded by its alias
tracking = open_tracking(one, experiment="chapter-13")  # open again: the tables exist
client = mlflow.MlflowClient()


def log_checkpoint(path, run_name):
    params, metrics = checkpoint_record(path)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(params)
        for name, points in metrics.items():
            for step, value in points:
                mlflow.log_metric(name, value, step=step)
        mlflow.set_tag("sha256", hash_file(path))
        mlflow.log_artifact(str(path), artifact_path="checkpoint")
        return run.info.run_id, mlflow.get_artifact_uri("checkpoint")


def history(run_id, name):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, name)]


run1, source1 = log_checkpoint(SHIPPED_CHECKPOINT, "shipped")
client.create_registered_model("gpt-python")
v1 = client.create_model_version("gpt-python", source=source1, run_id=run1).version
client.set_registered_model_alias("gpt-python", "champion", v1)
result["alias_before"] = [v1, client.get_model_version_by_alias("gpt-python", "champion").version]
model, notes = GPT.load(SHIPPED_CHECKPOINT)
half = one / "half.pt"
model.save(half, dtype=torch.float16, vocab=notes["vocab"], iters=notes["iters"])
run2, source2 = log_checkpoint(half, "float16")
v2 = client.create_model_version("gpt-python", source=source2, run_id=run2).version
client.set_registered_model_alias("gpt-python", "champion", v2)
result["alias_after"] = [v2, client.get_model_version_by_alias("gpt-python", "champion").version,
                         client.get_registered_model("gpt-python").aliases == {"champion": v2}]
client.set_registered_model_alias("gpt-python", "champion", v1)  # a rollback is one call
result["rolled_back_to_run1"] = client.get_model_version_by_alias("gpt-python", "champion").run_id == run1
client.set_registered_model_alias("gpt-python", "champion", v2)

prompt = CharTokenizer.from_chars(notes["vocab"]).encode("        return ")
result["served"] = {}
for uri, file in (("models:/gpt-python@champion", half), (f"models:/gpt-python/{v1}", SHIPPED_CHECKPOINT)):
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(one / "served" / file.stem)))
    served, direct = GPT.load(folder / file.name)[0], GPT.load(file)[0]
    result["served"][uri] = {"file": file.name, "same_bytes": hash_file(folder / file.name) == hash_file(file),
                             "tokens": served.generate(prompt, 40).tolist(),
                             "direct": direct.generate(prompt, 40).tolist()}

data = client.get_run(run1).data
result["run1"] = {"params": data.params, "tags": data.tags, "sha256": hash_file(SHIPPED_CHECKPOINT),
                  "train_loss": history(run1, "train_loss"), "val_loss": history(run1, "val_loss"),
                  "notes": {k: notes[k] for k in ("iters", "train_loss", "val_loss", "command", "history")}}
data = client.get_run(run2).data
result["run2"] = {"weights": data.params["weights"], "metrics": data.metrics}

curve = {"eval_iters": [0, 50, 100], "train_loss": [4.5, 3.25, 2.5], "val_loss": [4.5, 3.5, 2.75]}
tiny = one / "tiny.pt"
GPT(GPTConfig(vocab_size=5, context=4, n_layer=1, n_head=1, d_model=8)).save(
    tiny, vocab="abcde", iters=100, train_loss=2.5, history=curve)
run3, _ = log_checkpoint(tiny, "tiny")
result["curve"] = [curve, {name: history(run3, name) for name in ("train_loss", "val_loss")}]

result["files"] = sorted(p.relative_to(one).as_posix() for p in one.rglob("*") if p.is_file())
tracking.close()
fds = Path("/proc/self/fd")
links = [os.readlink(fd) for fd in list(fds.iterdir()) if fd.exists()] if fds.is_dir() else []
result["open_files"] = [link for link in links if link.startswith(str(one))]
shutil.rmtree(one)

# ---- a second folder in the same process; mlflow was imported, and a telemetry client started
class Started:
    info = {"session_id": "scenario"}
    stopped = False

    def _clean_up(self):
        Started.stopped = True


telemetry._set_telemetry_client(Started())
two.mkdir()
shutil.move(spare, two / "mlflow.db")
tracking = open_tracking(two, experiment="chapter-13")
result["started_client_stopped"] = [Started.stopped, telemetry.get_telemetry_client() is None]
client = mlflow.MlflowClient()
result["two_models"] = [m.name for m in client.search_registered_models()]
with mlflow.start_run():
    mlflow.log_param("again", 1)
result["two_runs"] = len(client.search_runs([tracking.experiment_id]))
tracking.close()
result["uris_after_close"] = [os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                                                          "MLFLOW_EXPERIMENT_ID")]
shutil.rmtree(two)

# ---- the network: nothing was tried, and the hook would have seen it
result["network"] = list(calls)
try:
    socket.create_connection(("127.0.0.1", 9), timeout=0.5).close()
except OSError:
    pass
result["hook_sees_a_connection"] = any(c.startswith("socket.connect") for c in calls[len(result["network"]):])
print(json.dumps(result))
'''

# What turns MLflow's telemetry off without the switches (mlflow.telemetry.utils), and the
# settings a test run may have; the scenario starts without them.
NOT_PASSED_ON = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
                 "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
                 "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID",
                 "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                 "MLFLOW_EXPERIMENT_ID", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The scenario's report, and the HOME, TMPDIR and working folder it ran with."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("tracking")
    outside = {name: root / name for name in ("home", "tmp", "cwd")}
    for folder in outside.values():
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in NOT_PASSED_ON}
    env.update(HOME=str(outside["home"]), TMPDIR=str(outside["tmp"]), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCENARIO, *(str(root / n) for n in ("one", "two", "empty.db"))],
                          cwd=outside["cwd"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), outside, root


def test_the_model_loaded_by_its_alias_writes_exactly_the_tokens_of_its_file(scenario):
    served = scenario[0]["served"]
    assert served["models:/gpt-python@champion"]["file"] == "half.pt"  # the alias had moved to version 2
    for uri, seen in served.items():
        assert seen["same_bytes"] and len(seen["tokens"]) == 40, uri
        assert seen["tokens"] == seen["direct"], uri


def test_the_alias_moves_to_the_new_version_and_back(scenario):
    result = scenario[0]
    v1, before = result["alias_before"]
    v2, after, only_alias = result["alias_after"]
    assert before == v1 and after == v2 != v1 and only_alias
    assert result["rolled_back_to_run1"]


def test_the_run_holds_the_checkpoints_settings_its_recorded_losses_and_its_hash(scenario):
    run1, run2 = scenario[0]["run1"], scenario[0]["run2"]
    params, notes = run1["params"], run1["notes"]
    assert (params["n_layer"], params["d_model"], params["weights"]) == ("4", "128", "float32")
    assert params["iters"] == str(notes["iters"]) and params["command"] == notes["command"]
    assert "vocab" not in params and run1["tags"]["sha256"] == run1["sha256"]
    # the shipped checkpoint carries its loss curve (benchmarks/gpt_train.py --save): every point is a step
    history = notes["history"]
    assert history["eval_iters"][-1] == notes["iters"] and len(history["eval_iters"]) >= 5
    for name in ("train_loss", "val_loss"):
        assert run1[name] == [[step, value] for step, value in zip(history["eval_iters"], history[name])]
        assert run1[name][-1] == [notes["iters"], notes[name]]
    assert run2["weights"] == "float16" and run2["metrics"] == {}  # the copy records no losses of its own


def test_a_recorded_loss_curve_becomes_the_metric_history(scenario):
    curve, logged = scenario[0]["curve"]
    for name in ("train_loss", "val_loss"):
        assert sorted(map(tuple, logged[name])) == list(zip(curve["eval_iters"], curve[name])), name


def test_telemetry_is_off_and_nothing_reaches_the_network(scenario):
    result = scenario[0]
    assert not result["ci_or_testing"] and result["disabled_without_switches"] is False  # on, unless switched off
    assert result["disabled_with_switches"] is True and result["telemetry_client"] is False
    assert result["started_client_stopped"] == [True, True]  # one started by an earlier import is stopped
    assert result["network"] == [] and result["hook_sees_a_connection"]


def test_everything_is_in_the_folder_and_the_folder_can_be_removed(scenario):
    result, outside, root = scenario
    files = result["files"]
    assert "mlflow.db" in files and "half.pt" in files
    assert any(f.startswith("artifacts/") and f.endswith("/checkpoint/gpt-python-2000.pt") for f in files), files
    assert result["open_files"] == []
    assert {name: sorted(folder.rglob("*")) for name, folder in outside.items()} == \
        {"home": [], "tmp": [], "cwd": []}, "MLflow wrote outside its folder"
    assert not (root / "one").exists() and not (root / "two").exists()


def test_a_second_folder_in_the_same_process_is_a_registry_of_its_own(scenario):
    result = scenario[0]
    assert result["two_models"] == [] and result["two_runs"] == 1
    assert result["uris_after_close"] == [None, None, None]  # closing gave MLflow back its settings


def test_checkpoint_record_refuses_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        checkpoint_record(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a GPT checkpoint"):
        checkpoint_record(tmp_path / "other.pt")
    GPT(GPTConfig(vocab_size=5, context=4, n_layer=1, n_head=1, d_model=8)).save(
        tmp_path / "bad.pt", history={"eval_iters": [0, 1], "val_loss": [1.0]})
    with pytest.raises(ValueError, match=r"history\['val_loss'\] has 1 values for 2 eval_iters"):
        checkpoint_record(tmp_path / "bad.pt")
    params, metrics = checkpoint_record(SHIPPED_CHECKPOINT)
    assert set(metrics) == {"train_loss", "val_loss"} and "train_loss" not in params


def test_every_code_cell_of_the_chapters_mlflow_section_is_guarded():
    """The chapter runs on without mlflow: the section asks section_ready once, and each of its
    code cells does its work under ``if MLFLOW:``."""
    cells = json.loads((REPO / "notebooks/13-databases/13-databases.ipynb").read_text())["cells"]
    start = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith("(ch13-model-registry-mlflow)="))
    end = next(i for i in range(start + 1, len(cells)) if "".join(cells[i]["source"]).startswith("(ch13-"))
    code = ["".join(c["source"]) for c in cells[start:end] if c["cell_type"] == "code"]
    asks = "MLFLOW = section_ready(13, MLFLOW_SECTION)"
    assert code[0].startswith("from attnedu.doctor import MLFLOW_SECTION, section_ready\n\n" + asks), code[0][:120]
    bodies = [code[0].split(asks, 1)[1].split("\n", 1)[1]] + code[1:]  # each from its `if MLFLOW:` on
    assert len(bodies) >= 3 and all(body.startswith("if MLFLOW:\n") for body in bodies)
    assert all(not line or line.startswith(" ") for body in bodies for line in body.split("\n")[1:])
    assert "tracking.close()" in code[-1]
