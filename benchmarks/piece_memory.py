"""Memory of reading one large piece in-process: the figure behind ``large_file``'s analysis.

Builds the benchmark's assembled-shaped file (8 row groups x 131,072 rows x 500 float32
features) on a SeaweedFS server on loopback, reads one partition (one 259 MiB row group) with
the synchronous scheduler after a first partition has warmed the imports, and prints the RSS
peak over the process before the read (sampled every 2 ms) and what the frame holds.

    .venv/bin/python benchmarks/piece_memory.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as R
from s3server import SeaweedS3


def main() -> None:
    import dask
    import intake

    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(Path(tmp) / "s3", R.BUCKET) as srv:
        url = R.build_large(srv, Path(tmp), 131072, 500)
        proc = psutil.Process()
        peak = [0]

        def watch() -> None:
            while True:
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.002)

        threading.Thread(target=watch, daemon=True).start()
        opts = {"anon": True, "client_kwargs": {"endpoint_url": srv.endpoint}}
        ddf = intake.open_cpg_profiles(url, storage_options=opts).to_dask()
        with dask.config.set(scheduler="sync"):
            ddf.partitions[7].compute()  # imports and first-use costs
            time.sleep(0.3)
            before = proc.memory_info().rss
            peak[0] = 0
            part = ddf.partitions[0].compute()
            frame = int(part.memory_usage(deep=False).sum())
            print(
                f"read of one piece: peak +{(peak[0] - before) / 2**20:.0f} MiB over the "
                f"process before it; the frame holds {frame / 2**20:.0f} MiB"
            )


if __name__ == "__main__":
    main()
