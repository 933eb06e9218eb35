"""One process of a torchrun-style group for tests/test_distributed.py: the test starts one per rank
with the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR) and runs here, one after
the other, the ``rc3d-af`` command lines of a JSON file (each with its own MASTER_PORT), writing
their exit statuses to ``<statuses>.rank<R>.json``. Several commands in one pair of processes keep
the test fast (a torchrun launch costs seconds of interpreter start-up on a 2-core machine).

Usage: python tests/distributed_worker.py JOBS.json STATUSES_PREFIX
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from rc3d_af.cli import main as cli

    jobs_path, statuses = sys.argv[1], sys.argv[2]
    with open(jobs_path) as handle:
        jobs = json.load(handle)
    codes = []
    for job in jobs:
        os.environ["MASTER_PORT"] = str(job["port"])
        try:
            code = cli(job["argv"])
        except SystemExit as exc:  # the quiet exit of a rank other than 0 after rank 0's error
            code = exc.code
        codes.append(code)
    with open(f"{statuses}.rank{os.environ['RANK']}.json", "w") as handle:
        json.dump(codes, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
