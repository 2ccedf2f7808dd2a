"""Flex-template entry point: the template's parameters arrive as --name=value flags. clout's own
(metadata.json) go to `clout run` under their command-line spelling; the rest (Dataflow's) on to Beam."""

import sys

from clout.cli import main

CLOUT_PARAMETERS = {"window", "period", "lateness", "bootstrap", "redis_url", "group"}


def clout_flag(arg: str) -> str:
    name, _, value = arg[2:].partition("=")
    return f"--{name.replace('_', '-')}={value}" if name in CLOUT_PARAMETERS else arg


if __name__ == "__main__":
    sys.exit(main(["run", "--streaming", *(clout_flag(a) if a.startswith("--") else a for a in sys.argv[1:])]))
