"""How fast the registered recogniser answers once warm (issue #34: a photo in 1 s on this machine), served by
`mlflow models serve --env-manager local`, as a user's client sees it: one photo per request, over HTTP.

Usage: python benchmarks/serving.py [--model URI] [--requests N] [--photos DIR]

Run where `dvc repro` ran: the model defaults to the one reports/registered.json names, the photos to the packed
test photos (data/shards). Starts the server, waits for it, sends one request to warm it, then N requests of one
photo each (a different photo each time), and prints the server's start time and the seconds per request (median,
90th percentile, the slowest). Needs the project's environment active.
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

from landmark.data.shards import image_reader, packed_ids
from landmark.tracking import tracking_uri


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model URI (default: reports/registered.json's)")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    uri = args.model or json.loads(Path("reports/registered.json").read_text())["uri"]
    ids = packed_ids("data/shards", "test")[: args.requests + 1]
    reader = image_reader("data/shards", "test", ids)
    photos = [base64.b64encode(reader.read(position)).decode() for position in range(len(ids))]
    port = free_port()
    command = ["mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "--host", "127.0.0.1", "--port",
               str(port)]  # fmt: skip
    started = time.perf_counter()
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri()}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"mlflow models serve -m {uri} stopped (exit {server.returncode})")
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        ready = time.perf_counter() - started
        seconds = []
        for photo in photos:
            request = {"dataframe_split": {"columns": ["image"], "data": [[photo]]}}
            sent = time.perf_counter()
            response = requests.post(f"http://127.0.0.1:{port}/invocations", json=request, timeout=120)
            response.raise_for_status()
            seconds.append(time.perf_counter() - sent)
    finally:
        server.terminate()
        server.wait(timeout=30)
    first, warm = seconds[0], np.array(seconds[1:])
    print(
        f"serving {uri}: server up in {ready:.1f} s, first request {first:.3f} s; {len(warm)} warm requests of one "
        f"photo: median {np.median(warm):.3f} s, 90th percentile {np.percentile(warm, 90):.3f} s, "
        f"slowest {warm.max():.3f} s"
    )


if __name__ == "__main__":
    main()
