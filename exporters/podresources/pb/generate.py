"""Regenerate the PodResources stubs from api.proto: `python exporters/podresources/pb/generate.py`.

protoc names the module it imports after the .proto's path under the include root, so the proto is
staged at gpulens/exporters/podresources/pb/api.proto: the gRPC stub then imports
`gpulens.exporters.podresources.pb.api_pb2` and needs no post-processing. The drift test calls
`generate()` into a temp dir and compares bytes with the checked-in files.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = Path("gpulens", "exporters", "podresources", "pb")
OUTPUTS = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def generate(out_dir: Path, proto: Path = HERE / "api.proto") -> list[Path]:
    """Run grpc_tools' protoc on `proto` and write OUTPUTS into `out_dir`; returns their paths."""
    from grpc_tools import protoc  # a test/dev dependency only, hence imported here

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp, PACKAGE, "api.proto")
        staged.parent.mkdir(parents=True)
        shutil.copyfile(proto, staged)
        args = ["protoc", f"-I{tmp}", f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}",
                str(staged)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copyfile(Path(tmp, PACKAGE, name), out_dir / name)) for name in OUTPUTS]


if __name__ == "__main__":
    for path in generate(HERE):
        print(path)
    sys.exit(0)
