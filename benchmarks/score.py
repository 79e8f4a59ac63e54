"""Scoring a full-size submission: 117,577 test predictions (the 2019 test set) against a solution with Usage.

Usage: python benchmarks/score.py   (prints seconds to read both files and compute GAP)
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.submission import read_solution, read_submission, score

QUERIES = 117_577


def main():
    rng = np.random.default_rng(0)
    ids = pd.Series(rng.integers(0, 2**63, QUERIES, dtype=np.int64)).map("{:016x}".format)
    truth = np.where(rng.uniform(size=QUERIES) < 0.02, rng.integers(0, 203_094, QUERIES).astype(str), "")
    predicted = np.where(rng.uniform(size=QUERIES) < 0.5, truth, rng.integers(0, 203_094, QUERIES).astype(str))
    predicted = np.where(predicted == "", "1", predicted)
    landmarks = [
        f"{label} {confidence:.6f}" for label, confidence in zip(predicted, rng.uniform(size=QUERIES), strict=True)
    ]
    usage = rng.choice(["Public", "Private", "Ignored"], QUERIES, p=[0.3, 0.6, 0.1])
    with tempfile.TemporaryDirectory() as folder:
        submission_path, solution_path = Path(folder) / "submission.csv", Path(folder) / "solution.csv"
        pd.DataFrame({"id": ids, "landmarks": landmarks}).to_csv(submission_path, index=False)
        pd.DataFrame({"id": ids, "landmarks": truth, "Usage": usage}).to_csv(solution_path, index=False)
        started = time.perf_counter()
        submission = read_submission(submission_path)
        solution = read_solution(solution_path)
        read = time.perf_counter()
        result = score(submission, solution)
        done = time.perf_counter()
    print(
        f"score {QUERIES:,} predictions: read + validate {read - started:.3f} s, GAP (all, public, private) "
        f"{done - read:.3f} s; gap {result['gap']:.4f}"
    )


if __name__ == "__main__":
    main()
