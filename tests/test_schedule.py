"""The schedule a dataset gets when nobody gave one (``search.schedule``)."""

from __future__ import annotations

from pathlib import Path

from policysearch.search.schedule import LADDER, choose_epochs


def test_the_first_rung_whose_doubling_adds_under_a_point_is_the_schedule() -> None:
    curve = {8: 0.40, 16: 0.55, 32: 0.61, 64: 0.615, 128: 0.62}
    trained: list[int] = []

    def train(epochs: int) -> float:
        trained.append(epochs)
        return curve[epochs]

    schedule = choose_epochs(train)
    assert schedule.epochs == 32 and trained == [8, 16, 32, 64], "stops at the flat doubling"
    assert "doubling 32 to 64 added +0.5 pts, under 1" in schedule.sentence(500)
    assert "crop+flip trained on the target's 500 images and reached 40.0 % at 8" in \
        schedule.sentence(500)


def test_a_ladder_still_improving_takes_its_top_and_says_so() -> None:
    schedule = choose_epochs(lambda epochs: epochs / 200)  # +4 pts a doubling at least
    assert schedule.epochs == LADDER[-1] and "still improving" in schedule.reason


def test_a_new_dataset_gets_its_schedule_stated_and_a_resume_keeps_it(tmp_path: Path) -> None:
    """No experiment file, no --epochs: the search trains the ladder before the study, says
    what it chose in its first lines, records it; the same command resumes with it, untrained."""
    from conftest import write_image_folder
    from test_owndata import run_cli

    from policysearch.study.record import read_study
    from policysearch.study.storage import open_storage

    write_image_folder(tmp_path / "mydata", classes=2, per_class=40, size=16,
                       test_per_class=10)
    args = ("search", "--dataset", "mydata", "--trials", "0", "--study-name", "new")
    first = run_cli(tmp_path, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    said = next(i for i, line in enumerate(lines) if line.startswith("epochs: none given"))
    created = next(i for i, line in enumerate(lines) if "study 'new' created" in line)
    assert said < created, "stated before the study and any trial"
    chosen = int(lines[said].split("the target and the proxy train ")[1].split()[0])
    assert chosen in LADDER and "crop+flip at 8 epochs" in first.stdout
    import optuna

    study = optuna.load_study(study_name="new",
                              storage=open_storage(f"sqlite:///{tmp_path}/optuna.db"))
    stored = read_study(study).experiment
    assert stored["trainer"]["epochs"] == stored["target"]["trainer"]["epochs"] == chosen
    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "study 'new' resumed" in again.stdout and "epochs: none given" not in again.stdout
