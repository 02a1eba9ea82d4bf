"""Artifacts on S3 (`FLYTE_LAB_ARTIFACTS=s3://bucket/prefix`) through fsspec/s3fs against a real local S3
server (moto's server mode on 127.0.0.1), with credentials and endpoint from the environment only.

The artifact store's own checks are re-run unchanged on an S3 root; then whole `flyte-lab run`s, on the
local cluster and on a `tcp://` cluster of separate worker processes (no `--shared-fs`: S3 is shared), put
every executed notebook, result file and output in the bucket and nothing under FLYTE_LAB_HOME/artifacts.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyte_lab.engine.artifacts import ArtifactStore
from flyte_lab.errors import ArtifactError
from tests.conftest import CLI, cli_env
from tests.process_helpers import (
    DASK,
    accepts,
    free_port,
    only_run_id,
    open_store,
    procs,
    spawn,
    wait_for,
    write_notebook,
)
from tests.s3_server import S3Server, Unavailable

# The artifact store's own checks (the `store` fixture below replaces the local/memory one).
from tests.test_artifacts import (  # noqa: F401
    KEY,
    WIDGET,
    T,
    Widget,
    test_an_empty_folder_round_trips,
    test_any_with_non_json_value_is_pickled,
    test_bad_signature_is_refused_before_unpickling,
    test_custom_class_travels_by_pickle_with_a_warning,
    test_dataclass_with_nested_dataclass_round_trips,
    test_dataframe_round_trips_with_index_and_column_order,
    test_enum_round_trips_by_value,
    test_file_path_round_trips,
    test_folder_path_round_trips,
    test_identical_values_share_one_uri,
    test_json_round_trip,
    test_list_of_dataframes_stores_each_as_parquet,
    test_missing_path_is_refused,
    test_nan_round_trips,
    test_ndarray_round_trips,
    test_optional_dataframe_and_none,
    test_ref_fields_and_preview,
    test_signed_payload_is_loaded,
    test_store_survives_pickling,
    test_union_with_a_path_arm_stores_the_file,
    test_wrong_type_is_refused,
)

BUCKET = "flyte-lab-team"
__all__ = ["procs"]  # a fixture, used by name


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    try:
        server = S3Server.start()
    except Unavailable as why:
        pytest.skip(f"no S3 server for the object-store tests: {why}")
    try:
        server.make_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3.env()


@pytest.fixture
def store(s3_env: dict[str, str], tmp_path: Path) -> ArtifactStore:
    # opened as a task's kernel opens it: these tests read pickles back
    return ArtifactStore(f"s3://{BUCKET}/{uuid.uuid4().hex}", KEY, cache_dir=str(tmp_path / "cache"),
                         allow_pickle=True)


def test_an_s3_root_is_remote_and_keeps_its_url(store: ArtifactStore) -> None:
    assert not store.local
    assert store.root_url.startswith(f"s3://{BUCKET}/")
    art = store.put([1, 2], T("list", T("int")))
    assert art.uri.startswith(store.root_url + "/")


def test_an_object_changed_in_the_bucket_is_refused(store: ArtifactStore, s3: S3Server) -> None:
    art = store.put(Widget(3), WIDGET)
    path = store.path_of(art.uri.removeprefix(store.root_url + "/"))
    data = bytearray(store.fs.cat_file(path))
    data[-2] ^= 0x01
    store.fs.pipe_file(path, bytes(data))  # someone with write access to the bucket
    fresh = ArtifactStore(store.root_url, KEY, cache_dir=str(Path(store.cache_dir).parent / "c2"), allow_pickle=True)
    with pytest.raises(ArtifactError, match="content hash"):
        fresh.get(art.uri, WIDGET)


def test_uris_in_another_bucket_or_prefix_are_refused(store: ArtifactStore) -> None:
    art = store.put(5, T("int"))
    key = art.uri.removeprefix(store.root_url + "/")
    for uri in (f"s3://{BUCKET}/elsewhere/{key}", f"s3://other-bucket/{key}", f"file:///{key}"):
        with pytest.raises(ArtifactError):
            store.get(uri, T("int"))


# -- whole runs ------------------------------------------------------------------------------------------------


def _notebook(tmp_path: Path) -> Path:
    return write_notebook(
        tmp_path / "s3.ipynb", "n = 5",
        "%%flyte_task make(n: int) -> numbers: list[int] --cpu 1\nnumbers = list(range(n))",
        "%%flyte_task square(numbers: int) -> squares: int --map-over numbers\nsquares = numbers * numbers",
        "%%flyte_task total(squares: list[int]) -> result: int\nresult = sum(squares)",
    )


def _check_run_in_bucket(s3: S3Server, prefix: str, env: dict[str, str], stdout: str, home: Path) -> None:
    run = json.loads(stdout)
    assert run["status"] == "succeeded", run
    keys = set(s3.keys(BUCKET, prefix + "/"))
    for name, task in run["tasks"].items():
        notebook = task["output_notebook"]
        assert notebook.startswith(f"s3://{BUCKET}/{prefix}/runs/{run['run_id']}/"), (name, notebook)
        assert notebook.removeprefix(f"s3://{BUCKET}/") in keys, (name, notebook)
        for value in task["outputs"].values():
            assert value["uri"].removeprefix(f"s3://{BUCKET}/") in keys, (name, value)
    results = [k for k in keys if k.endswith(".outputs.json")]
    assert results, sorted(keys)
    outputs = subprocess.run([*CLI, "outputs", run["run_id"], "--json"], env=env, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    assert outputs.returncode == 0, outputs.stderr
    assert json.loads(outputs.stdout)["total"]["result"] == sum(i * i for i in range(5))
    assert not (home / "artifacts").exists()  # nothing went to the local default root


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_a_local_run_puts_notebooks_results_and_outputs_in_the_bucket(s3: S3Server, home: Path,
                                                                      tmp_path: Path) -> None:
    prefix = f"local-{uuid.uuid4().hex[:8]}"
    env = {**cli_env(home), **s3.env(), "FLYTE_LAB_ARTIFACTS": f"s3://{BUCKET}/{prefix}"}
    ran = subprocess.run([*CLI, "run", str(_notebook(tmp_path)), "--cluster", "local", "--workers", "2", "--json"],
                         env=env, capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    _check_run_in_bucket(s3, prefix, env, ran.stdout, home)


def _tcp_cluster(env: dict[str, str], home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> str:
    """A Dask scheduler and two workers on 127.0.0.1, each worker with a home of its own: the driver's disk is
    not theirs."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--dashboard-address", "127.0.0.1:0"], home, tmp_path / "scheduler.log")
    procs.append(scheduler)
    wait_for(lambda: accepts(port) or scheduler.poll() is not None, 30, "the Dask scheduler to listen")
    for i in range(2):
        # workers get the S3 credentials from their own environment, as on other machines
        with (tmp_path / f"worker{i}.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--resources", "CPU=2,MEMORY=2e9", "--name", f"w{i}"],
                env={**env, "FLYTE_LAB_HOME": str(tmp_path / f"worker{i}-home")}, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, start_new_session=True))

    def two_workers() -> bool:
        from distributed import Client

        try:
            with Client(address, timeout=10) as client:
                return len(client.scheduler_info()["workers"]) == 2
        except (OSError, TimeoutError):  # a loaded machine: the scheduler answers late; ask again
            return False

    wait_for(two_workers, 60, "both workers to join", interval=0.5)
    return address


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_a_tcp_cluster_needs_no_shared_fs_with_s3(s3: S3Server, home: Path, tmp_path: Path,
                                                  procs: list[subprocess.Popen[bytes]]) -> None:
    home.mkdir(parents=True)
    prefix = f"tcp-{uuid.uuid4().hex[:8]}"
    env = {**cli_env(home), **s3.env(), "FLYTE_LAB_ARTIFACTS": f"s3://{BUCKET}/{prefix}"}
    address = _tcp_cluster(env, home, tmp_path, procs)
    ran = subprocess.run([*CLI, "run", str(_notebook(tmp_path)), "--cluster", address, "--json"], env=env,
                         capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    _check_run_in_bucket(s3, prefix, env, ran.stdout, home)
    for i in range(2):  # the workers wrote nothing to a disk of theirs either
        assert not (tmp_path / f"worker{i}-home" / "artifacts").exists()


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_live_output_of_tcp_workers_that_share_no_disk_with_the_driver(s3: S3Server, home: Path, tmp_path: Path,
                                                                       procs: list[subprocess.Popen[bytes]]) -> None:
    """Issue 20: the lines come through Dask (worker events), not through any file of the driver's; the executed
    notebook saved during the attempt is in the bucket."""
    from tests.test_live_output import ticker_notebook

    home.mkdir(parents=True)
    prefix = f"live-{uuid.uuid4().hex[:8]}"
    env = {**cli_env(home), **s3.env(), "FLYTE_LAB_ARTIFACTS": f"s3://{BUCKET}/{prefix}"}
    address = _tcp_cluster(env, home, tmp_path, procs)
    with (tmp_path / "run.log").open("wb") as log:  # the driver's environment names the bucket
        procs.append(subprocess.Popen([*CLI, "run", str(ticker_notebook(tmp_path / "ticker.ipynb")), "--cluster",
                                       address], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                      start_new_session=True))
    run_id = wait_for(lambda: only_run_id(home), 60, "the run to be recorded")
    follow = subprocess.Popen([*CLI, "logs", run_id, "tick", "--follow"], env=env, stdout=subprocess.PIPE,
                              text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        seen = [follow.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        with open_store(home) as store:
            assert store.run_tasks(run_id)["tick"]["status"] == "running"  # read before the task ended
            assert seen == ["tick 0\n", "tick 1\n", "tick 2\n"]
            url = wait_for(lambda: store.get_run(run_id)["tasks"]["tick"]["output_notebook"], 30,
                           "the executed notebook's first save")
            assert url.startswith(f"s3://{BUCKET}/{prefix}/") and url.removeprefix(f"s3://{BUCKET}/") in \
                s3.keys(BUCKET, prefix + "/")
            assert store.run_tasks(run_id)["tick"]["status"] == "running"
        cancel = subprocess.run([*CLI, "cancel", run_id], env=env, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        assert cancel.returncode == 0, cancel.stderr
        assert follow.wait(30) == 0  # the run ended: `--follow` stops by itself
    finally:
        if follow.poll() is None:
            follow.kill()
    assert not any((tmp_path / f"worker{i}-home" / "artifacts").exists() for i in range(2))


@pytest.mark.parametrize(("case", "says"), [
    ("no-credentials", "Unable to locate credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("no-bucket", "cannot write there (The specified bucket does not exist)"),
])
def test_an_unwritable_s3_root_is_refused_in_one_line_before_anything_is_stored(
        s3: S3Server, home: Path, tmp_path: Path, case: str, says: str) -> None:
    env = {k: v for k, v in cli_env(home).items() if not k.startswith("AWS_")}
    env.update(s3.env())
    bucket = BUCKET
    if case == "no-credentials":
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    else:
        bucket = "no-such-bucket"
    env["FLYTE_LAB_ARTIFACTS"] = f"s3://{bucket}/team"
    nb = write_notebook(tmp_path / "one.ipynb", "n = 1", "%%flyte_task one(n: int) -> m: int\nm = n")
    done = subprocess.run([*CLI, "run", str(nb), "--cluster", "local"], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"flyte-lab: error: FLYTE_LAB_ARTIFACTS=s3://{bucket}/team: "), lines
    assert says in lines[0]
    assert "Traceback" not in done.stderr
    from flyte_lab.store import RunStore

    if (home / "store.db").exists():
        with RunStore(f"sqlite:///{home}/store.db") as store:
            assert store.list_runs() == []
