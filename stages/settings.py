"""Stage settings: params.yaml as the parser reads it, one JSON file per setting, for the other stages to depend on.

Usage: python -m stages.settings OUT_DIR

Every stage but this one reads params.yaml through landmark/settings.py, yet depends on this stage's slices of
the params it lists, not on the parser's code: OUT_DIR/SECTION/KEY.json holds the parsed value of SECTION.KEY
(OUT_DIR/variants/NAME.json a variant, variant_defaults applied). An edit of the parser that changes no parsed
value (a comment, a clearer message, a new check) rewrites the same files, and DVC reruns nothing after this
stage; one that changes a value changes its file, and DVC reruns exactly the stages that read it. The runtime
section, how fast it runs, is nobody's param and gets no file.
"""

import shutil
import sys
from pathlib import Path

from landmark.errors import exits_cleanly
from landmark.files import write_json
from landmark.settings import load_settings


def slices(settings) -> dict:
    """(section, key) -> the parsed value of each setting but the runtime's, as JSON writes it."""
    # warnings off: pydantic warns that the tuples our checks return are not the lists JSON has, and writes them
    # as those lists all the same
    parsed = settings.model_dump(mode="json", exclude={"runtime"}, warnings=False)
    return {(section, key): value for section, values in parsed.items() for key, value in values.items()}


@exits_cleanly
def main(out_dir):
    found = slices(load_settings())
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)  # a variant taken out of params.yaml leaves no file behind
    for (section, key), value in found.items():
        write_json(out / section / f"{key}.json", value)
    print(f"settings: {len(found)} settings of {len({section for section, _ in found})} sections -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
