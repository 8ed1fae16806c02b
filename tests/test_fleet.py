"""The fleet on a real Ray cluster of several nodes on this machine, all on 127.0.0.1.

Three worker nodes join with their own ``edgeai-target:NAME`` resource (a, b, c); the head holds no
target. Models are tiny zoo exports and benchmarks run few iterations: the point is what lands in
the report (row groups, what ran where, faults as rows), not speed (that is benchmarks/bench_fleet.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import edgeai
from edgeai.fleet.shards import judge, merge, sample_stats, split_ranges
from edgeai.parity import Tolerance, output_metrics

from conftest import DEVICES, ROOT

pytestmark = pytest.mark.fleet

try:
    import ray
except ImportError:  # the fleet extra is optional: the cluster tests say why they did not run
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed: pip install 'edgeai[fleet]'")
OV = "openvino:CPU" if "openvino:CPU" in DEVICES else None
NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False,
        "node_ip_address": "127.0.0.1"}
FAST = {"warmup": 1, "iterations": 20, "rounds": 2}


# --- merging shard statistics (no cluster) ---------------------------------------------------------

def _merged(name, refs, cands, tol, cuts):
    stats = [sample_stats(name, r, c, tol) for r, c in zip(refs, cands, strict=True)]
    bounds = [0, *cuts, len(stats)]
    return judge(merge([merge(stats[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]), tol)


@pytest.mark.parametrize("cuts", [[], [1], [3, 4], [2, 5, 6]])
def test_merged_shards_equal_one_pass_over_all_samples(cuts):
    rng = np.random.default_rng(0)
    refs = [rng.normal(size=(2, 10)).astype(np.float32) for _ in range(7)]
    cands = [r + rng.normal(scale=1e-3, size=r.shape).astype(np.float32) for r in refs]
    cands[3][0, 2] = np.nan  # a NaN the reference lacks: counted, and a failure
    cands[5] = cands[5][:, ::-1].copy()  # argmax disagreements: top-1 below 100%
    for tol in (Tolerance(), Tolerance.for_precision("int8"), Tolerance(atol=None, rtol=None, min_cosine=None)):
        assert _merged("logits", refs, cands, tol, cuts) == output_metrics("logits", refs, cands, tol)


def test_merged_shards_report_the_first_shape_mismatch():
    refs = [np.ones((2, 3), np.float32)] * 4
    cands = [np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), np.ones((3, 3), np.float32),
             np.ones((1, 3), np.float32)]
    assert _merged("y", refs, cands, Tolerance(), [2]) == output_metrics("y", refs, cands, Tolerance())


def test_split_ranges_cover_every_sample_once():
    for total, parts in ((10, 3), (2, 3), (9, 3), (1, 1)):
        ranges = split_ranges(total, parts)
        assert [i for a, b in ranges for i in range(a, b)] == list(range(total))
        assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1


def test_corrupted_bytes_are_refused_before_anything_is_written(tmp_path):
    from edgeai.fleet.shipping import Shipment, ShippedFile, TransferError, write_verified

    good = b"model bytes"
    import hashlib

    shipment = Shipment("m.onnx", "m.onnx", (ShippedFile("m.onnx", hashlib.sha256(good).hexdigest(), len(good)),))
    with pytest.raises(TransferError, match="arrived corrupted"):
        write_verified(shipment, {"m.onnx": b"model bytez"}, tmp_path)
    assert not any(tmp_path.rglob("*.onnx"))
    evil = Shipment("m", ".", (ShippedFile("../x", hashlib.sha256(good).hexdigest(), len(good)),))
    with pytest.raises(TransferError, match="leaves"):
        write_verified(evil, {"../x": good}, tmp_path)
    assert write_verified(shipment, {"m.onnx": good}, tmp_path).read_bytes() == good


# --- a real cluster ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """Head (no target) + nodes a, b, c on 127.0.0.1; the driver connected through edgeai.fleet.connect."""
    if ray is None:
        pytest.skip("Ray is not installed: pip install 'edgeai[fleet]'")
    from ray.cluster_utils import Cluster

    import edgeai.fleet as fleet

    # Fast failure detection, so a killed node is declared dead in seconds rather than ~30 s.
    system = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
    c = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0, "_system_config": system})
    nodes = {n: c.add_node(**NODE, resources={f"edgeai-target:{n}": 1}) for n in "abc"}
    c.wait_for_nodes()
    with fleet.connect(c.address):
        yield c, nodes
    c.shutdown()


@pytest.fixture(scope="module")
def cnn(zoo_onnx):
    return zoo_onnx("cnn")


def _descendants(roots):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


def _ray_pids(c):
    roots = [p.process.pid for node in [c.head_node, *c.worker_nodes] for procs in node.all_processes.values()
             for p in procs]
    return _descendants(roots) | {os.getpid()}


def _sockets(pids, listening):
    out = subprocess.run(["ss", "-tnpH"] + (["-l"] if listening else []), capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            parts = line.split()
            found.append((parts[3], parts[4]))
    return found


def _loopback(addr):
    host = addr.rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("::ffff:127.0.0.1", "::1")


@needs_ray
def test_targets_are_described_by_each_box(cluster):
    import edgeai.fleet as fleet
    from edgeai.cpu import cpu_info

    infos = fleet.targets()
    assert [t.name for t in infos] == ["a", "b", "c"]
    assert len({t.node_id for t in infos}) == 3
    for t in infos:
        assert t.ok and t.address == "127.0.0.1"
        assert t.cpu["model"] == cpu_info().model and t.cpu["features"] == list(cpu_info().features)
        assert "cpu" in t.devices and t.engines["onnxruntime"]
    assert [t.name for t in fleet.targets(names="c,a")] == ["c", "a"]
    with pytest.raises(fleet.FleetError, match="unknown target"):
        fleet.targets(names="a,zz")


@needs_ray
def test_cluster_traffic_stays_on_loopback(cluster):
    c, _ = cluster
    pids = _ray_pids(c)
    listening = _sockets(pids, listening=True)
    assert listening, "found no listening socket of the Ray processes; the check would prove nothing"
    assert all(_loopback(local) for local, _ in listening), listening
    connected = _sockets(pids, listening=False)
    assert all(_loopback(local) and _loopback(peer) for local, peer in connected), connected


@needs_ray
def test_bench_over_three_targets_is_one_report_with_a_group_per_target(cluster, cnn, tmp_path):
    import edgeai.fleet as fleet
    from edgeai.fleet.render import fleet_plot, fleet_text

    report = fleet.bench([cnn], devices=["cpu", "cuda"], batches=[1, 2], **FAST, timeout=300)
    groups = report.groups()
    assert list(groups) == ["a", "b", "c"] and report.models[0]["name"] == "cnn.onnx"
    for name, rows in groups.items():
        assert [(r.device, r.batch) for r in rows] == [("cpu", 1), ("cpu", 2), ("cuda", 1), ("cuda", 2)]
        for r in rows[:2]:  # what ran where, on every row
            assert r.ok and r.target == name and r.host and r.cpu == edgeai.cpu_info().model
            assert r.engine.startswith("onnxruntime ") and r.provider.startswith("CPUExecutionProvider")
            assert r.precision == "f32" and r.metrics["runs"] == 20 and r.metrics["p50_ms"] > 0
        for r in rows[2:]:  # a device the box lacks is a row saying so, not a gap
            assert r.status == "unsupported: cuda is not on this box; it has " + ", ".join(DEVICES)
    assert not report.complete and report.passed  # unsupported cells are not failures
    json.dumps(report.to_dict())
    text = fleet_text(report)
    assert all(f"{t} " in text for t in "abc") and "unsupported [1]" in text
    assert fleet_plot(report, tmp_path / "fleet.png").stat().st_size > 10_000


@needs_ray
def test_check_over_three_targets(cluster, cnn, zoo_onnx):
    import edgeai.fleet as fleet

    devices = ["cpu"] + ([OV] if OV else [])
    report = fleet.check(cnn, [cnn], "random:4", devices=devices)
    assert list(report.groups()) == ["a", "b", "c"]
    assert len(report.rows) == 3 * len(devices) and report.passed
    for r in report.rows:
        assert r.metrics["samples"] == 4 and r.metrics["verdict"].startswith("PASS")
        assert r.engine.split()[0] == ("openvino" if r.device == OV else "onnxruntime")


def _data_folder(path, n):
    path.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        np.savez(path / f"{i:03d}.npz", pixel_values=rng.normal(size=(1, 1, 28, 28)).astype(np.float32))
    return path


@needs_ray
@pytest.mark.parametrize("limits", [{}, {"atol": 1e-7, "rtol": 0.0}], ids=["default", "tight"])
def test_split_check_equals_one_box_over_all_the_data(cluster, cnn, tmp_path, limits):
    import edgeai.fleet as fleet

    data = _data_folder(tmp_path / "data", 11)
    devices = ["cpu"] + ([OV] if OV else [])
    report = fleet.check(cnn, [cnn], data, devices=devices, split=True, **limits)
    assert list(report.groups()) == ["a+b+c"]  # the three boxes are one kind: one merged row per device
    for row, device in zip(report.rows, devices, strict=True):
        assert row.ok and row.metrics["samples"] == 11
        assert [s["samples"] for s in row.metrics["shards"]] == [[0, 4], [4, 8], [8, 11]]
        assert [s["target"] for s in row.metrics["shards"]] == ["a", "b", "c"]
        local = edgeai.compare(cnn, cnn, data, device=device, tolerance=limits or None)
        assert row.detail["outputs"] == [o.to_dict() for o in local.outputs]  # the same floats, not close ones
        assert row.metrics["passed"] == local.passed
    if limits and OV:
        assert not report.rows[1].metrics["passed"]  # the verdict can fail: OpenVINO is not bit-exact


@needs_ray
def test_corrupted_model_transfer_is_refused(cluster, cnn):
    import edgeai.fleet as fleet

    good = fleet.ship(cnn)
    blob = bytearray(Path(cnn).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad = replace(good, ref=ray.put({"cnn.onnx": bytes(blob)}))
    report = fleet.bench([bad, good], targets="a,b", devices=["cpu"], **FAST)
    for rows in report.groups().values():
        assert rows[0].status.startswith("failed: cnn.onnx: cnn.onnx arrived corrupted")
        assert "refused" in rows[0].status and rows[1].ok  # the good copy still ran
    check = fleet.check(cnn, [bad], "random:2", targets="c")
    assert check.rows[0].status.startswith("failed: cnn.onnx") and not check.passed


@needs_ray
def test_a_target_past_its_timeout_fails_alone(cluster, cnn):
    import edgeai.fleet as fleet

    report = fleet.bench([cnn], targets="a", devices=["cpu"], warmup=0, duration=3.0, rounds=1, timeout=0.5)
    assert report.rows[0].status == "failed: target a did not finish within the 0.5 s timeout"


def _running_task(c, node, name, deadline):
    raylet = node.all_processes["raylet"][0].process.pid
    while time.monotonic() < deadline:
        for pid in _descendants([raylet]):
            try:
                if name in Path(f"/proc/{pid}/cmdline").read_text():
                    return pid
            except OSError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"{name} never started on the node")


@needs_ray
def test_a_node_killed_midway_is_a_failed_row_and_the_others_finish(cluster, cnn):
    import edgeai.fleet as fleet

    c, _ = cluster
    victim = c.add_node(**NODE, resources={"edgeai-target:d": 1})
    c.wait_for_nodes()
    out = {}
    run = threading.Thread(target=lambda: out.setdefault("report", fleet.bench(
        [cnn], targets="a,b,d", devices=["cpu"], warmup=1, duration=6.0, rounds=2, timeout=300)))
    run.start()
    _running_task(c, victim, "bench_on_box", time.monotonic() + 120)
    c.remove_node(victim, allow_graceful=False)
    run.join(300)
    report = out["report"]
    groups = report.groups()
    assert list(groups) == ["a", "b", "d"]
    assert all(r.ok and r.metrics["runs"] >= 10 for t in "ab" for r in groups[t])
    (dead,) = groups["d"]
    assert dead.status.startswith("failed: target d") and ("left the cluster" in dead.status
                                                           or "died" in dead.status)
    assert [t.status.startswith("failed") for t in report.targets] == [False, False, True]


@needs_ray
def test_without_an_address_a_local_loopback_instance_runs_this_box(cnn, tmp_path):
    code = f"""
import json, os, pathlib, subprocess, edgeai.fleet as fleet
def ours():  # this process and everything it started (gcs_server, raylet, workers)
    kids = {{}}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            kids.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except OSError:
            pass
    seen, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += kids.get(pid, [])
    return seen
with fleet.connect(object_store_mb=100, num_cpus=1):
    report = fleet.bench([r"{cnn}"], devices=["cpu"], warmup=1, iterations=10, rounds=1)
    pids = ours()
    lines = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True).stdout.splitlines()
    listening = [ln.split()[3] for ln in lines if any(f"pid={{p}}," in ln for p in pids)]
print(json.dumps({{"groups": list(report.groups()), "ok": report.complete, "listening": listening}}))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["groups"] == ["local"] and result["ok"]
    assert result["listening"] and all(_loopback(a) for a in result["listening"]), result["listening"]


@needs_ray
def test_cli_command_functions_print_and_return_exit_codes(cluster, cnn, tmp_path, capsys):
    from edgeai.fleet import command

    code = command.bench([str(cnn)], targets="a,b", device=["cpu"], batches=[1], warmup=0, iterations=10, rounds=1,
                         markdown=tmp_path / "fleet.md", json_out=True)
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "edgeai.fleet.bench" and list(out["groups"]) == ["a", "b"]
    assert "| a |" in (tmp_path / "fleet.md").read_text()
    assert command.check([str(cnn)], reference=str(cnn), targets="c", data="random:2") == 0
    text = capsys.readouterr().out
    assert "c: PASS" in text and "1 of 1 checks ran and passed" in text
    assert command.check([str(cnn)], reference=str(cnn), targets="c", data="random:2", device=["cuda"]) == 1
    assert "unsupported [1]" in capsys.readouterr().out
    assert command.targets(names="b", json_out=True) == 0
    assert json.loads(capsys.readouterr().out)["targets"][0]["name"] == "b"


@needs_ray
def test_a_shard_whose_box_dies_is_run_again_on_a_box_of_the_same_kind(cluster, cnn):
    import edgeai.fleet as fleet

    c, _ = cluster
    victim = c.add_node(**NODE, resources={"edgeai-target:e": 1})
    c.wait_for_nodes()
    out = {}
    # Enough random samples that each shard runs for seconds: the kill lands while e works on its own.
    run = threading.Thread(target=lambda: out.setdefault("report", fleet.check(
        cnn, [cnn], 6000, targets="a,b,e", devices=["cpu"], split=True, timeout=300)))
    run.start()
    _running_task(c, victim, "check_shard", time.monotonic() + 120)
    c.remove_node(victim, allow_graceful=False)
    run.join(300)
    (row,) = out["report"].rows
    assert row.ok and row.target == "a+b+e" and row.metrics["samples"] == 6000
    assert [s["target"] for s in row.metrics["shards"]] == ["a", "b", "a"]  # e's shard, again on a
    local = edgeai.compare(cnn, cnn, 6000, device="cpu")
    assert row.detail["outputs"] == [o.to_dict() for o in local.outputs]


@needs_ray
def test_the_console_script_runs_bench_and_check_across_the_fleet(cluster, cnn, cli, tmp_path):
    """`edgeai bench/check --fleet ADDRESS` and `edgeai fleet targets`: the real CLI, one JSON report."""
    c, _ = cluster
    out = cli("bench", cnn, "--fleet", c.address, "--targets", "a,b", "--warmup", "0", "--iterations", "10",
              "--rounds", "1", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert list(json.loads(out.stdout)["groups"]) == ["a", "b"]
    out = cli("check", cnn, "--reference", cnn, "--fleet", c.address, "--targets", "c", "--data", "random:2")
    assert out.returncode == 0 and "c: PASS" in out.stdout, out.stderr[-2000:]
    out = cli("fleet", "targets", "--fleet", c.address, "--targets", "b", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["targets"][0]["name"] == "b"
    refused = cli("bench", cnn, "--fleet", c.address, "--csv", tmp_path / "x.csv")
    assert refused.returncode == 2 and "--fleet does not take --csv" in refused.stderr
    assert not (tmp_path / "x.csv").exists()
