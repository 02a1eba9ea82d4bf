"""What a task's kernel uses, measured while it runs, and its `--mem` enforced: real runs on a local cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flyte_lab.presentation.formats import sizing_hints
from tests.conftest import CLI, cli_env
from tests.process_helpers import write_notebook

pytestmark = pytest.mark.cluster

MiB = 2**20


def run(home: Path, nb: Path) -> tuple[int, dict]:
    done = subprocess.run([*CLI, "run", str(nb), "--cluster", "local", "--workers", "1", "--json"],
                          env=cli_env(home), capture_output=True, text=True, timeout=240)
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def shown(home: Path, run_id: str) -> tuple[dict, str]:
    record = subprocess.run([*CLI, "show", run_id, "--json"], env=cli_env(home), capture_output=True, text=True,
                            timeout=60, check=True)
    text = subprocess.run([*CLI, "show", run_id], env=cli_env(home), capture_output=True, text=True, timeout=60,
                          check=True)
    return json.loads(record.stdout), text.stdout


def test_a_tasks_peak_memory_is_recorded_and_a_loose_request_gets_a_hint(home: Path, tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "alloc.ipynb", "n = 1",
                        "%%flyte_task hold(n: int) -> size: int --mem 4Gi\nimport time\n"
                        "block = b'x' * (300 * 2**20)\ntime.sleep(1.5)\nsize = len(block)")
    code, record = run(home, nb)
    assert code == 0, record
    record, text = shown(home, record["run_id"])
    usage = record["tasks"]["hold"]["usage"]
    assert 300 * MiB <= usage["peak_rss_bytes"] <= 1024 * MiB, usage
    assert usage["cpu_s"] > 0
    assert record["attempts_detail"]["hold"][0]["usage"] == usage
    assert "peak " in text and "cpu-s" in text
    assert "hint: task `hold` asked --mem 4Gi and peaked at" in text
    # the widget and the dashboard's task table say the same
    from flyte_lab.dashboard.table_rows import task_rows
    from flyte_lab.kernel_ext.run_widget import tasks_html
    from flyte_lab.presentation.formats import format_usage

    used = format_usage(usage)
    assert used.startswith("peak ") and f'<td class="flyte-used">{used}</td>' in tasks_html(record["tasks"], {})
    assert task_rows(record)[0]["used"] == used


def test_a_task_over_its_mem_is_stopped_retried_and_the_others_carry_on(home: Path, tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "oom.ipynb", "n = 1",
                        "%%flyte_task greedy(n: int) -> size: int --mem 300Mi --retries 1\nimport time\n"
                        "block = b'x' * (1024 * 2**20)\ntime.sleep(5)\nsize = len(block)",
                        "%%flyte_task modest(n: int) -> m: int\nm = n + 1")
    code, record = run(home, nb)
    assert code == 1
    greedy, modest = record["tasks"]["greedy"], record["tasks"]["modest"]
    assert modest["status"] == "succeeded"
    assert (greedy["status"], greedy["attempts"]) == ("failed", 2)  # its --retries covered the first
    error = greedy["error"]
    assert error["type"] == "TaskOutOfMemory"
    assert "over its --mem of 300 MiB" in error["message"] and "MiB of memory" in error["message"]
    peak = int(error["message"].split(" used ")[1].split(" MiB")[0].replace(",", ""))
    assert peak > 300


def test_sizing_hints_say_what_a_task_used_against_what_it_asked() -> None:
    tasks = {
        "loose": {"resources": {"mem": "8Gi"}, "usage": {"peak_rss_bytes": 300 * MiB, "cpu_s": 1.0},
                  "duration_s": 10.0},
        "tight": {"resources": {"mem": "512Mi"}, "usage": {"peak_rss_bytes": 400 * MiB, "cpu_s": 1.0},
                  "duration_s": 10.0},
        "busy": {"resources": {"cpu": 1}, "usage": {"peak_rss_bytes": 100 * MiB, "cpu_s": 19.0},
                 "duration_s": 10.0},
        "unmeasured": {"resources": {"mem": "8Gi"}, "usage": None},
    }
    assert sizing_hints(tasks) == [
        "task `loose` asked --mem 8Gi and peaked at 300MiB: --mem 512Mi would do",
        "task `busy` used 1.9 CPUs on average but asked --cpu 1: ask for more, or its neighbours on the worker "
        "are slowed",
    ]
