"""cgroup parsing on files in each runtime's and driver's format, and the fixture /proc's edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulens.exporters.pods.procfs import CgroupRef, ProcessGone, ProcFS, UnknownFormat, parse_cgroup
from gpulens.sim.sharedgpu import LAYOUTS, ProcTree, container_id, pod_uid

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pods" / "cgroup"
UID = "7f3d2c1a-9b8e-4d6f-a5c4-3e2b1a0f9d8c"
CID = "2f8e5c1d9a7b6e4f3c2d1a0b9e8f7a6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f"
RUNTIME = {"containerd": "containerd", "cri-o": "cri-o", "docker": "docker"}


def _expected(name: str) -> CgroupRef | None | type[UnknownFormat]:
    if name.startswith(("host-", "docker-outside")):
        return None
    if name.startswith("unknown-"):
        return UnknownFormat
    if name.startswith("static-pod"):
        return CgroupRef("3e1b1d9c4f6a7b8c9d0e1f2a3b4c5d6e", CID, "containerd")
    if name.startswith("kind-nested"):
        return CgroupRef(UID, CID, "containerd")
    # <cgroup>-<driver>-<runtime>[-qos]: cgroupfs names containerd's and Docker's cgroups by bare ID
    runtime = next(r for r in RUNTIME if f"-{r}" in name)
    if "-cgroupfs-" in name and runtime != "cri-o":
        runtime = ""
    return CgroupRef(UID, CID, runtime)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.txt")))
def test_every_fixture_format(name: str) -> None:
    text = (FIXTURES / f"{name}.txt").read_text()
    want = _expected(name)
    if want is UnknownFormat:
        with pytest.raises(UnknownFormat):
            parse_cgroup(text)
    else:
        assert parse_cgroup(text) == want


def test_fixtures_cover_every_layout_the_sim_writes() -> None:
    names = {p.stem for p in FIXTURES.glob("*.txt")}
    assert {layout.name for layout in LAYOUTS} <= names
    assert {"v1", "v2", "hybrid", "v2-cgroupns"} == {layout.cgroup for layout in LAYOUTS}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
@pytest.mark.parametrize("qos", ["guaranteed", "burstable", "besteffort"])
def test_sim_layouts_round_trip(layout, qos: str) -> None:
    uid, cid = pod_uid(f"{layout.name}/{qos}"), container_id(qos)
    ref = parse_cgroup(layout.text(uid, cid, qos))
    assert ref is not None and (ref.pod_uid, ref.container_id) == (uid, cid)


def test_unknown_format_message_names_the_segment() -> None:
    with pytest.raises(UnknownFormat, match="libpod-"):
        parse_cgroup((FIXTURES / "unknown-podman-libpod.txt").read_text())
    with pytest.raises(UnknownFormat, match="without a pod UID"):
        parse_cgroup("0::/kubepods.slice/kubepods-burstable.slice\n")


def test_garbage_lines_are_skipped() -> None:
    assert parse_cgroup("") is None
    assert parse_cgroup("not a cgroup line\n\n") is None
    assert parse_cgroup(f"garbage\n0::/kubepods/pod{UID}/{CID}\n") == CgroupRef(UID, CID, "")


def test_procfs_reads_and_classifies(tmp_path: Path) -> None:
    tree = ProcTree(str(tmp_path))
    tree.process(100, f"0::/kubepods/pod{UID}/{CID}\n")
    tree.write(101, "comm", "python3\n")  # listed, then exited between the directory and the cgroup read
    tree.unreadable(102)
    proc = ProcFS(str(tmp_path))
    assert proc.host_pid_namespace()
    assert "kubepods" in proc.read_cgroup(100)
    for pid in (101, 999):
        with pytest.raises(ProcessGone):
            proc.read_cgroup(pid)
    with pytest.raises(OSError) as err:
        proc.read_cgroup(102)
    assert not isinstance(err.value, ProcessGone)


def test_own_pid_namespace_is_not_the_hosts(tmp_path: Path) -> None:
    """Without hostPID the exporter's /proc has no kernel threads: pid 2 is absent or a user process."""
    tree = ProcTree(str(tmp_path), host_pid=False)
    assert not ProcFS(str(tmp_path)).host_pid_namespace()
    tree.write(2, "stat", "2 (sh) S 1 2 2 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0\n")
    assert not ProcFS(str(tmp_path)).host_pid_namespace()
