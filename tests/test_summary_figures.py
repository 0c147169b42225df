"""The side-by-side table and summary.png of collected sweeps."""

import struct
from pathlib import Path

from mlp_sweep import cli


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_a_setting_one_sweep_lacks_is_an_empty_cell(run_app, tmp_path, capsys):
    assert run_app("-m", "hidden=20,40", "epochs=1", "hydra.sweep.dir=outputs/a").code == 0
    assert run_app("-m", "hidden=40", "epochs=1", "hydra.sweep.dir=outputs/b").code == 0
    assert cli.main(["compare", str(tmp_path / "outputs/a"), str(tmp_path / "outputs/b")]) == 0
    side = capsys.readouterr().out.split("side by side")[1].split("\n\n")[1]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in side.splitlines()[2:]]
    assert [(row[0], row[2]) for row in rows] == [("20", ""), ("40", rows[1][1])]
    assert "nan" not in side


def test_three_swept_parameters_add_a_parallel_coordinates_row(run_app, tmp_path):
    args = ["-m", "lr=0.05,0.5", "hidden=20,40", "epochs=1"]
    assert run_app(*args, "hydra.sweep.dir=outputs/two").code == 0
    assert run_app(*args, "init_std=0.01,0.3", "hydra.sweep.dir=outputs/three").code == 0
    two = png_size(tmp_path / "outputs/two/summary.png")
    three = png_size(tmp_path / "outputs/three/summary.png")
    assert two[1] == 2 * 380 and three[1] == 3 * 380  # curves, parameters (, parallel)
