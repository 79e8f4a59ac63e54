"""The `landmark` command: recognise your own photos; score and validate Kaggle submissions; turn a profile into
`dvc exp run` flags; run the pipeline on several seeds; check params.yaml before a long run."""

import argparse
import json
import sys
import time
from pathlib import Path

from landmark.data.layout import read_csv
from landmark.errors import UserError, exits_cleanly
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


def _seeds(args):
    from landmark import seeds

    out = Path(args.out)
    if args.seeds:
        seeds.run_seeds(args.seeds, Path.cwd(), out)
    runs = seeds.write_table(out)
    print(f"{out / 'seeds.md'}: {len(runs)} runs kept (seeds {', '.join(map(str, runs)) or 'none'})")


def _check(args):
    from landmark.checks import check_params

    started = time.perf_counter()
    params = load_params(args.params)
    variants = check_params(params, this_machine=not args.no_hardware, models=not args.no_models)
    built = f" and {variants} variants" if variants else ""
    methods = len(params["recognize"]["methods"])
    print(
        f"{args.params}: every setting, {methods} recognition methods{built} are valid "
        f"({time.perf_counter() - started:.1f} s)"
    )


def _predict(args):
    from landmark import predict  # imports torch, faiss and timm, which the other commands do without
    from landmark.runtime import pick_device
    from landmark.settings import parse_params

    params = parse_params(load_params(args.params))
    variant, method = (
        predict.chosen_recognition(args.submission) if args.model is None or args.method is None else (None, None)
    )
    if args.model is None and variant in params.embed.ensembles:
        raise UserError(
            f"{args.submission}: the submission's recognition is the ensemble {variant}, and landmark predict reads "
            "one model; pass --model models/<variant>/model.pt"
        )
    model = Path(args.model) if args.model else Path("models") / variant / "model.pt"
    name = model.parent.name
    recognizer = predict.Recognizer.load(
        model, Path("indexes") / name, Path("embeddings") / name, args.method or method, params,
        pick_device(params.runtime.device), args.gallery_images, Path("local_features") / name,
    )  # fmt: skip
    paths, problems = predict.usable(args.images, params.filter.max_image_pixels)
    answers, voters = recognizer.answers(recognizer.found(paths), args.top_k) if paths else ([], None)
    names = predict.landmark_names(args.names)
    print("\n".join(predict.answer_lines(args.images, problems, answers, names, args.json)))
    if args.show and paths:
        from landmark.report import plot_answers

        plot_answers(paths, voters, answers, args.gallery_images, args.show)
        print(f"{args.show}: {len(paths)} photos beside their nearest gallery photos", file=sys.stderr)
    if problems:
        sys.exit(1)


@exits_cleanly
def main(argv=None):
    parser = argparse.ArgumentParser(prog="landmark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predictor = commands.add_parser("predict", help="the landmarks of your own photos, by the submission's recognition")
    predictor.add_argument("images", nargs="+", help="image files (any format PIL opens, whatever their name)")
    predictor.add_argument("--top-k", type=int, default=3, help="landmarks per photo, best first (default 3)")
    predictor.add_argument("--json", action="store_true", help="one JSON object per photo")
    predictor.add_argument("--model", help="a variant's model.pt (default: the submission's); its index and "
                           "embeddings are read from indexes/<variant>/ and embeddings/<variant>/")  # fmt: skip
    predictor.add_argument("--method", help="a recognition method, e.g. knn+query_penalty (default: the submission's)")
    predictor.add_argument("--names", default="data/raw/train_label_to_category.csv",
                           help="landmark_id,category names file (GLDv2's), used where present")  # fmt: skip
    predictor.add_argument("--submission", default="reports/submission.json", help="the submission's choice")
    predictor.add_argument("--params", default="params.yaml")
    predictor.add_argument("--show", metavar="OUT.png", help="draw each photo beside its nearest gallery photos")
    predictor.add_argument(
        "--gallery-images",
        default="data/shards",
        help="the gallery's stored photos, drawn by --show and matched by a method that verifies",
    )
    predictor.set_defaults(run=_predict)
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
    seeder = commands.add_parser(
        "seeds", help="run the pipeline once per train.seed (dvc exp run) and tabulate every row's mean and spread"
    )
    seeder.add_argument("seeds", nargs="*", type=int, help="train.seed values; none: only rewrite the table")
    seeder.add_argument("--out", default="reports/seeds", help="where each run's figures and seeds.md go")
    seeder.set_defaults(run=_seeds)
    checker = commands.add_parser(
        "check", help="check every setting of a params file and the recognition methods, and build every variant"
    )
    checker.add_argument("--params", default="params.yaml")
    checker.add_argument(
        "--no-hardware", action="store_true", help="skip what the settings ask of this machine (GPUs, a compiler)"
    )
    checker.add_argument(
        "--no-models", action="store_true", help="skip building the variants' models (no torch: a second)"
    )
    checker.set_defaults(run=_check)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
