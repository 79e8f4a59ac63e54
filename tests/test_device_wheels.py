"""benchmarks/device_wheels.py: what a GPU machine lacks for the stages, from the installed dependency tree, and
the wheels split into parts that each fit one device call."""

from benchmarks import device_wheels


def test_the_stages_need_dvc_mlflow_client_and_faiss_but_not_the_kaggle_client_or_mlflow_server():
    needs = device_wheels.stage_needs()
    assert {"dvc", "mlflow-skinny", "sqlalchemy", "alembic", "faiss-cpu", "pydantic"} <= set(needs)
    assert "kaggle" not in needs and "mlflow" not in needs


def test_what_a_machine_lacks_is_the_closure_less_what_it_has():
    lacking = device_wheels.missing(["dvc"], set(), "3.12")
    assert {"dvc", "dvc-data", "scmrepo", "pygit2", "dulwich"} <= set(lacking)
    having_git = device_wheels.missing(["dvc"], {"scmrepo"}, "3.12")
    assert "scmrepo" not in having_git and "dvc-data" in having_git  # dvc-data is dvc's own need too


def test_wheels_are_split_into_parts_under_the_limit(tmp_path):
    wheels = []
    for name, size in [("a", 40), ("b", 30), ("c", 20), ("d", 10), ("e", 5)]:
        wheels.append(tmp_path / f"{name}-1-py3-none-any.whl")
        wheels[-1].write_bytes(b"x" * size)
    parts = device_wheels.in_parts(wheels, 50)
    assert sorted(wheel.name[0] for part in parts for wheel in part) == list("abcde")
    assert all(sum(wheel.stat().st_size for wheel in part) <= 50 for part in parts) and len(parts) == 3
