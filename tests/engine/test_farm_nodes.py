"""The farm on a cluster of several machines: each worker is planned on one node and asks only for
what that node has (a worker asking for the whole cluster's CPUs fits nowhere and waits forever)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from engine.farm import ray_available
from engine.farm.cluster import plan_workers


def test_workers_are_planned_node_by_node_so_each_fits_on_one_machine():
    # A 2-CPU head and a 1-CPU node: one worker on each, each asking for its own node's CPUs (the cluster's
    # 3 CPUs together made one worker that asked for 3 and never started).
    assert plan_workers([("head", 2, 0), ("small", 1, 0)]) == [("head", 2, 0), ("small", 1, 0)]
    # One worker per 2 CPUs of each node, the nodes taking turns.
    assert plan_workers([("a", 8, 0), ("b", 4, 0)]) == [("a", 2, 0), ("b", 2, 0), ("a", 2, 0), ("b", 2, 0),
                                                        ("a", 2, 0), ("a", 2, 0)]
    # --workers N deals them round the nodes, a node's cores shared among its workers, never more than a CPU each.
    assert plan_workers([("a", 2, 0), ("b", 1, 0)], workers=3) == [("a", 1, 0), ("b", 1, 0), ("a", 1, 0)]
    assert plan_workers([("a", 2, 0), ("b", 1, 0)], workers=6) == [("a", 1, 0), ("b", 1, 0), ("a", 1, 0)]
    # With GPUs: one worker per GPU, on the nodes that have them.
    assert plan_workers([("a", 16, 2), ("cpu-only", 4, 0), ("c", 8, 1)]) == [("a", 0, 1), ("c", 0, 1), ("a", 0, 1)]
    assert plan_workers([("a", 16, 2), ("c", 8, 1)], workers=2) == [("a", 0, 1), ("c", 0, 1)]
    assert plan_workers([("a", 16, 2)], use_gpu=False) == [("a", 2, 0)] * 8


@pytest.mark.slow
@pytest.mark.skipif(not ray_available(), reason='Ray is not installed (pip install -e ".[farm]")')
def test_a_farm_joins_a_two_node_cluster_by_address_and_runs_a_grid_on_both(tiny_models, tmp_path):
    """A real two-node Ray cluster (two raylets on this machine, Ray's own multi-node test cluster) joined
    by its address, as `easel grid --farm ADDRESS` does; in a child process (one Ray connection a process)."""
    model = tiny_models.get("sd15")
    script = textwrap.dedent(f"""
        from ray.cluster_utils import Cluster
        from engine.api import GenerationRequest
        from engine.farm.farm import Farm
        from engine.grid import GridRun, SilentEvents, parse_axis, plan_grid
        from engine.library import Library

        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 2}})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        try:
            with Farm(cluster.address, device="cpu", folders=[{str(model.parent)!r}], include_defaults=False,
                      data_dir={str(tmp_path / "workers")!r}) as farm:
                where = farm.describe()
                print("nodes", len({{w["node"] for w in where}}), "workers", len(where), flush=True)
                request = GenerationRequest(prompt="a harbour", model={str(model)!r}, steps=2, width=64, height=64, seed=1)
                plan = plan_grid(request, parse_axis("seed=1,2,3,4"))
                with Library({str(tmp_path / "gallery")!r}) as gallery:
                    run = GridRun(plan, library=gallery, events=SilentEvents())
                    farm.run(plan, run)
                    print("saved", len(run.paths), flush=True)
        finally:
            import ray

            ray.shutdown()  # the driver leaves before the cluster's nodes go
            cluster.shutdown()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nodes 2 workers 2" in done.stdout
    assert "saved 4" in done.stdout


@pytest.mark.skipif(not ray_available(), reason='Ray is not installed (pip install -e ".[farm]")')
def test_a_cluster_address_where_nothing_answers_is_one_line_at_once(tiny_models, tmp_path):
    """Ray itself retries a head that is not there for ever (a warning every 30 s, no end)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "engine.cli", "grid", "--data-dir", str(tmp_path), "--model",
                           str(tiny_models.get("sd15")), "--prompt", "a harbour", "--x", "seed=1,2", "--width", "64",
                           "--height", "64", "--farm", f"127.0.0.1:{port}"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (f"easel: could not reach the Ray cluster at 127.0.0.1:{port}: "
                                                    "Connection refused (is `ray start --head` running there?)")


@pytest.mark.slow
@pytest.mark.skipif(not ray_available(), reason='Ray is not installed (pip install -e ".[farm]")')
def test_the_head_node_lost_mid_batch_stops_it_in_one_line_keeping_what_finished(tiny_models, tmp_path):
    """Ray ends a driver whose head is gone after 60 s with its own message and no exception; the farm
    notices first: one line, the finished images kept, the grid drawn from them."""
    model = tiny_models.get("sd15")
    script = textwrap.dedent(f"""
        import threading
        from ray.cluster_utils import Cluster
        from engine.api import GenerationRequest
        from engine.farm import FarmError
        from engine.farm.farm import Farm
        from engine.grid import GridRun, SilentEvents, parse_axis, plan_grid
        from engine.library import Library

        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()

        class KillHeadAfterTwo(SilentEvents):
            finished = 0
            def job_finished(self, job, paths):
                self.finished += 1
                if self.finished == 2:
                    cluster.head_node.kill_all_processes(check_alive=False, allow_graceful=False)

        farm = Farm(cluster.address, device="cpu", folders=[{str(model.parent)!r}], include_defaults=False,
                    data_dir={str(tmp_path / "workers")!r})
        request = GenerationRequest(prompt="a harbour", model={str(model)!r}, steps=2, width=64, height=64, seed=1)
        plan = plan_grid(request, parse_axis("seed=1-8"))
        with Library({str(tmp_path / "gallery")!r}) as gallery:
            run = GridRun(plan, library=gallery, events=KillHeadAfterTwo())
            try:
                farm.run(plan, run)
            except FarmError as exc:
                print("farm error:", exc, flush=True)
            print("kept", len(run.paths), "grid", run.finish() is not None, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert "farm error: lost the Ray cluster's head node: " in done.stdout, (done.stdout, done.stderr[-2000:])
    assert "the batch stopped and the " in done.stdout
    kept = int(done.stdout.split("kept ")[1].split()[0])
    assert 2 <= kept < 8 and "grid True" in done.stdout
