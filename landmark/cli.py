"""The `landmark` command: recognise your own photos; score and validate Kaggle submissions; turn a profile into
`dvc exp run` flags; run the pipeline on several seeds; check params.yaml before a long run."""

import argparse
import json
import sys
import time
from importlib.metadata import PackageNotFoundError, version
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
    from landmark.settings import load_settings

    settings = load_settings(args.params)
    if args.model and args.model.startswith(("models:/", "runs:/")):
        return _predict_registered(args, settings)
    chosen, method = (
        predict.chosen_recognition(args.submission) if args.model is None or args.method is None else (None, None)
    )
    model_path = Path(args.model) if args.model and args.model.endswith(".pt") else None
    recognition = model_path.parent.name if model_path else args.model or chosen
    recognizer = predict.Recognizer.load(
        recognition, args.method or method, settings, pick_device(settings.runtime.device), args.gallery_images,
        model_path,
    )  # fmt: skip
    paths, problems = predict.usable(args.images, settings.filter.max_image_pixels)
    answers, voters = recognizer.answers(recognizer.found(paths), args.top_k) if paths else ([], None)
    names = predict.landmark_names(args.names)
    print("\n".join(predict.answer_lines(args.images, problems, answers, names, args.json)))
    if args.show and paths:
        from landmark.report import plot_answers

        plot_answers(paths, voters, answers, args.gallery_images, args.show)
        print(f"{args.show}: {len(paths)} photos beside their nearest gallery photos", file=sys.stderr)
    if problems:
        sys.exit(1)


def _predict_registered(args, settings):
    """landmark predict by a registered model (landmark.serving), as `mlflow models serve` answers."""
    from landmark import predict, serving

    if args.method or args.show:
        flag = "--method" if args.method else "--show"
        raise UserError(
            f"{flag}: a registered model answers by its own method and carries no gallery photos to draw; drop "
            f"{flag}, or pass --model a variant or ensemble of params.yaml"
        )
    paths, problems = predict.usable(args.images, settings.filter.max_image_pixels)
    answers, names = serving.predict_files(args.model, paths, args.top_k) if paths else ([], {})
    print("\n".join(predict.answer_lines(args.images, problems, answers, names, args.json)))
    if problems:
        sys.exit(1)


def installed_version() -> str:
    try:
        return version("landmark")
    except PackageNotFoundError:  # run from a checkout that pip never installed
        return "(not installed: pip install --no-deps -e .)"


def _command(commands, name: str, run, summary: str, details: str = ""):
    """A subcommand whose --help page opens with what it does (summary, also its line in `landmark --help`)."""
    command = commands.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}." + (f" {details}" if details else "")
    )
    command.set_defaults(run=run)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landmark", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    params_help = "the params file to read (default params.yaml)"

    predictor = _command(
        commands, "predict", _predict, "the landmarks of your own photos, by the submission's recognition",
        "One line per photo, in order: up to --top-k landmarks with their confidences, or `no landmark`. Run it "
        "where `dvc repro` ran: it reads models/, indexes/, embeddings/ and reports/submission.json. A file that "
        "is missing or not an image is one `error:` line and exit status 1; the others are still answered.",
    )  # fmt: skip
    predictor.add_argument("images", nargs="+", help="image files (any format PIL opens, whatever their name)")
    predictor.add_argument("--top-k", type=int, default=3, help="landmarks per photo, best first (default 3)")
    predictor.add_argument("--json", action="store_true", help="one JSON object per photo")
    predictor.add_argument("--model", help="a variant or ensemble of params.yaml (default: the submission's), a "
                           "variant's model file (*.pt, its gallery that of its folder's name), or a registered "
                           "model (models:/landmark/<version>: reports/registered.json names the last)")  # fmt: skip
    predictor.add_argument("--method", help="a recognition method, e.g. knn+query_penalty (default: the submission's)")
    predictor.add_argument("--names", default="data/raw/train_label_to_category.csv",
                           help="landmark_id,category names file (GLDv2's), used where present")  # fmt: skip
    predictor.add_argument("--submission", default="reports/submission.json",
                           help="the variant and method the submission chose (default: that file)")  # fmt: skip
    predictor.add_argument("--params", default="params.yaml", help=params_help)
    predictor.add_argument("--show", metavar="OUT.png", help="draw each photo beside its nearest gallery photos")
    predictor.add_argument(
        "--gallery-images",
        nargs="+",
        default=["data/shards", "data/gallery_photos"],
        help="the gallery's stored photos (default: the pack stage's and the gallery_photos stage's), drawn by "
        "--show and matched by a method that verifies",
    )

    scorer = _command(
        commands, "score", _score, "Kaggle GAP of a submission against a solution file",
        "GAP as Kaggle scores it: one (landmark, confidence) per query, ranked by confidence over all queries; a "
        "prediction on a non-landmark query is wrong and still takes a rank.",
    )  # fmt: skip
    scorer.add_argument("submission", help="the submission CSV (id,landmarks: `landmark_id confidence` or empty)")
    scorer.add_argument("solution", help="id,landmarks[,Usage]; Ignored rows are dropped, Public/Private scored apart")
    scorer.add_argument("--ignore-non-landmarks", action="store_true", help="drop predictions on non-landmark queries")
    scorer.add_argument("--json", action="store_true", help="print a JSON object (key gap, and public/private)")

    validator = _command(
        commands, "validate-submission", _validate, "check a submission's format against the test ids",
        "Every test id once and no other id, each prediction `landmark_id confidence` or empty: what Kaggle "
        "would refuse is one line naming the problem and the fix.",
    )  # fmt: skip
    validator.add_argument("submission", help="the submission CSV to check")
    validator.add_argument("--test", required=True, help="the competition's test.csv")

    profile = _command(
        commands, "profile", _profile, "print the `-S key=value` flags that apply a profile with dvc exp run",
        "Use it as `dvc exp run $(landmark profile profiles/paper.yaml)`: the profile runs as one tracked "
        "experiment and params.yaml keeps its defaults.",
    )  # fmt: skip
    profile.add_argument("profile", help="a partial params file, e.g. profiles/paper.yaml")
    profile.add_argument("--params", default="params.yaml", help="the params file the profile changes")

    seeder = _command(
        commands, "seeds", _seeds,
        "run the pipeline once per train.seed (dvc exp run) and tabulate every row's mean and spread",
        "Each seed's figures are kept under --out/seed-N; seeds.md gives every row's mean ± sd, the submission's "
        "test GAP over the seeds and how far validation's choice fell from the best row (regret).",
    )  # fmt: skip
    seeder.add_argument("seeds", nargs="*", type=int, help="train.seed values; none: only rewrite the table")
    seeder.add_argument("--out", default="reports/seeds", help="where each run's figures and seeds.md go")

    checker = _command(
        commands, "check", _check,
        "check every setting of a params file and the recognition methods, and build every variant",
        "What a long run would stop on, said in one line each, before it starts.",
    )  # fmt: skip
    checker.add_argument("--params", default="params.yaml", help=params_help)
    checker.add_argument("--no-hardware", action="store_true",
                         help="skip what the settings ask of this machine (GPUs, a compiler)")  # fmt: skip
    checker.add_argument("--no-models", action="store_true",
                         help="skip building the variants' models (no torch: a second)")  # fmt: skip
    return parser


@exits_cleanly
def main(argv=None):
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
