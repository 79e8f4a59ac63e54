"""The `landmark` command: score and validate Kaggle submissions; turn a profile into `dvc exp run` flags; check
params.yaml before a long run."""

import argparse
import json
import time

from landmark.data.layout import read_csv
from landmark.errors import exits_cleanly
from landmark.params import load_params
from landmark.profiles import set_param_flags
from landmark.submission import read_solution, read_submission, score, validate_submission


def _score(args):
    result = score(read_submission(args.submission), read_solution(args.solution), args.ignore_non_landmarks)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print("  ".join(f"{key}: {value:.6f}" for key, value in result.items()))


def _validate(args):
    test_ids = read_csv(args.test, ["id"])["id"]
    submission = validate_submission(args.submission, test_ids)
    print(f"{args.submission}: valid, {len(test_ids)} ids, {len(submission)} predictions")


def _profile(args):
    print(" ".join(set_param_flags(args.profile, args.params)))


def _check(args):
    from landmark.checks import check_params  # imports torch and timm, which the other commands do without

    started = time.perf_counter()
    variants = check_params(load_params(args.params), this_machine=not args.no_hardware)
    print(f"{args.params}: every setting and {variants} variants are valid ({time.perf_counter() - started:.1f} s)")


@exits_cleanly
def main(argv=None):
    parser = argparse.ArgumentParser(prog="landmark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    scorer = commands.add_parser("score", help="Kaggle GAP of a submission against a solution file")
    scorer.add_argument("submission")
    scorer.add_argument("solution", help="id,landmarks[,Usage]; Ignored rows are dropped, Public/Private scored apart")
    scorer.add_argument("--ignore-non-landmarks", action="store_true", help="drop predictions on non-landmark queries")
    scorer.add_argument("--json", action="store_true", help="print a JSON object (key gap, and public/private)")
    scorer.set_defaults(run=_score)
    validator = commands.add_parser("validate-submission", help="check a submission's format against the test ids")
    validator.add_argument("submission")
    validator.add_argument("--test", required=True, help="the competition's test.csv")
    validator.set_defaults(run=_validate)
    profile = commands.add_parser(
        "profile", help="print the `-S key=value` flags that apply a profile with dvc exp run"
    )
    profile.add_argument("profile", help="a partial params file, e.g. profiles/paper.yaml")
    profile.add_argument("--params", default="params.yaml")
    profile.set_defaults(run=_profile)
    checker = commands.add_parser("check", help="check every setting of a params file, and build every variant")
    checker.add_argument("--params", default="params.yaml")
    checker.add_argument(
        "--no-hardware", action="store_true", help="skip what the settings ask of this machine (GPUs, a compiler)"
    )
    checker.set_defaults(run=_check)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
