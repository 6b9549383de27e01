"""The job runners utils/run.sh (local) and utils/slurm.sh (job array), run through bash."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

UTILS = Path(__file__).resolve().parents[1] / "utils"


def test_run_sh_parallel_jobs_logs_and_failures(tmp_path):
    res = subprocess.run([str(UTILS / "run.sh"), "JOB=1:3", "log/t.JOB.log", "bash", "-c", 'echo "job JOB  x"; exit $((JOB == 2))'],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 1
    assert "job 2 of 3 failed, see log/t.2.log" in res.stderr
    for j in (1, 2, 3):
        text = (tmp_path / f"log/t.{j}.log").read_text().splitlines()
        assert text[2] == f"job {j}  x"
        assert text[-1].startswith(f"# Ended (code {int(j == 2)})")
    ok = subprocess.run([str(UTILS / "run.sh"), "--max-jobs-run", "1", "--mem", "4G", "TASK=2:3", "log/u.TASK.log",
                         "touch", "f.TASK"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "f.2").exists() and (tmp_path / "f.3").exists() and not (tmp_path / "f.1").exists()


def _stand_in_sbatch(tmp_path, body: str) -> dict:
    """An environment whose `sbatch` records its arguments in sbatch.args, then runs BODY."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text('#!/usr/bin/env bash\necho "$*" > sbatch.args\n' + body)
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_slurm_sh_job_array_script(tmp_path):
    """With a stand-in sbatch that runs each array task, the generated job script does the work."""
    env = _stand_in_sbatch(tmp_path, 'for a in "$@"; do case $a in --array=*) r=${a#--array=}; r=${r%%%*};; esac; done\n'
                                     'script=${!#}\n'
                                     'for ((i=${r%-*}; i<=${r#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i bash "$script"; done\n')
    res = subprocess.run([str(UTILS / "slurm.sh"), "--partition", "cpu", "--max-jobs-run", "2", "JOB=1:2",
                          "exp/log/feat.JOB.log", "bash", "-c", 'echo "a b" JOB; exit $((JOB - 1))'],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 1
    assert "1 of 2 jobs failed (2), see exp/log/feat.2.log" in res.stderr
    assert "--array=1-2%2" in (tmp_path / "sbatch.args").read_text()
    assert "--partition=cpu" in (tmp_path / "sbatch.args").read_text()
    assert (tmp_path / "exp/log/feat.1.log").read_text().splitlines()[2] == "a b 1"
    assert (tmp_path / "exp/log/q/feat.sh").is_file()


def test_run_sh_nproc_per_node_starts_cpu_processes_under_torchrun(tmp_path):
    """--nproc-per-node N: N torchrun processes on this machine, one thread each unless told."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv's torchrun
    res = subprocess.run([str(UTILS / "run.sh"), "--torchrun", "--nproc-per-node", "2", "log/t.log", "bash", "-c",
                          'echo "rank $RANK of $WORLD_SIZE, threads $OMP_NUM_THREADS"'],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "log/t.log").read_text().splitlines()
    assert sorted(x for x in lines if x.startswith("rank ")) == ["rank 0 of 2, threads 1", "rank 1 of 2, threads 1"]


def test_slurm_sh_nproc_per_node_asks_for_no_gpu(tmp_path):
    env = _stand_in_sbatch(tmp_path, "")
    subprocess.run([str(UTILS / "slurm.sh"), "--torchrun", "--nproc-per-node", "2", "exp/log/train.log", "true"],
                   cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "gpus" not in (tmp_path / "sbatch.args").read_text()
    assert "--nproc-per-node=2" in (tmp_path / "exp/log/q/train.sh").read_text()
