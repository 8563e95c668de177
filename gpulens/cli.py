"""The one `gpulens` command: each subcommand parses flags, loads typed config and calls one run_*().

Flags are generated from the config dataclass, so a field, its flag, its GPULENS_* variable and
its YAML key can never drift apart. Bad input exits 2 with one line per problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from gpulens import __version__
from gpulens.config import ConfigError, load

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line naming the allowed flags, exit 2."""

    def error(self, message: str) -> NoReturn:
        allowed = sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))
        if "unrecognized arguments" in message:
            message += f" (allowed: {', '.join(allowed)})"
        self.exit(USAGE_ERROR, f"{self.prog}: {message}\n")


def _add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (keys as the flags, with underscores).")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        default = f" (default: {f.default!r})" if f.default not in ("", None) else ""
        choices = f" One of: {', '.join(meta['choices'])}." if meta.get("choices") else ""
        env = f" Env: GPULENS_{f.name.upper()}."
        # Values stay text here: config.load converts and validates them with exact messages.
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, nargs="?", const="true", default=None, metavar="BOOL",
                                help=meta["help"] + default + env)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.split("_")[-1].upper(),
                                help=meta["help"] + default + choices + env)


def _flags(ns: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Command:
    """One subcommand: its config dataclass and its `run(cfg) -> exit code`, as "module:attr" paths.

    Paths, not objects, so `gpulens --help` and a flag typo never import NVML, grpc, torch or kserve.
    """

    config: str
    help: str
    run: str


def _resolve(path: str) -> Any:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


# One line per component; each component package owns its config dataclass and its run().
COMMANDS: dict[str, Command] = {
    "gpu-exporter": Command("gpulens.exporters.gpu.config:GpuExporterConfig",
                            "Export NVML GPU metrics (DaemonSet on every GPU node).", "gpulens.exporters.gpu.app:main"),
    "kserve-exporter": Command("gpulens.exporters.kserve.config:KserveExporterConfig",
                               "Export InferenceService state and normalised model-server stats (Deployment, :9446).",
                               "gpulens.exporters.kserve.app:main"),
    "logship": Command("gpulens.exporters.logship.config:LogshipConfig",
                       "Ship ECS JSON lines (stdin or a file) to Elasticsearch: spool, retries, dead letters.",
                       "gpulens.exporters.logship.app:main"),
    "elk-setup": Command("gpulens.elk.install:ElkSetupConfig",
                         "Install the ILM policy, index template and Kibana saved objects for gpulens events.",
                         "gpulens.elk.install:main"),
    "dashboards import": Command("gpulens.dashboards.importer:DashboardsImportConfig",
                                 "Push the gpulens dashboards to Grafana (overwrite by uid).", "gpulens.dashboards.importer:main"),
    "probe": Command("gpulens.probes.inference.config:ProbeConfig", "Probe inference services with traced requests (port 9447).",
                     "gpulens.probes.inference.app:main"),
    "canary": Command("gpulens.probes.canary.config:CanaryConfig", "Run the torch GPU canary and export its figures (port 9449).",
                      "gpulens.probes.canary.app:main"),
    "up": Command("gpulens.up.config:UpConfig", "Run the whole suite on this machine (make run).", "gpulens.up.app:run"),
    "top": Command("gpulens.top:TopConfig", "Terminal view of GPUs, inference services, probes and alerts.", "gpulens.top:run"),
}


def build_parser() -> tuple[_Parser, dict[str, _Parser]]:
    parser = _Parser(prog="gpulens", description="Observability for GPU model serving on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"gpulens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers: dict[str, _Parser] = {}
    for name, command in COMMANDS.items():
        subparsers[name] = sub.add_parser(name, help=command.help, description=command.help)
        _add_config_flags(subparsers[name], _resolve(command.config))
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    parser, subparsers = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if " ".join(argv[:2]) in COMMANDS:  # two-word commands ("dashboards import") are one registry key
        argv = [" ".join(argv[:2]), *argv[2:]]
    ns, extra = parser.parse_known_args(argv)
    if ns.command is None:
        parser.print_help()
        return USAGE_ERROR
    if extra:  # reported by the subcommand's parser, so the allowed flags listed are its own
        subparsers[ns.command].error(f"unrecognized arguments: {' '.join(extra)}")
    command = COMMANDS[ns.command]
    cls = _resolve(command.config)
    try:
        cfg = load(cls, ns.config, flags=_flags(ns, cls),
                   warn=lambda line: print(f"gpulens {ns.command}: warning: {line}", file=sys.stderr))
        return int(_resolve(command.run)(cfg))
    except ConfigError as err:
        for line in err.problems:
            print(f"gpulens {ns.command}: {line}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
