"""learning_curves.png: a title naming the dataset, rule and model, and the
held-out curve labelled "validation" (the test split is not a curve)."""

import pytest

from tess_keras import training
from tess_keras.training import rundir


def history(validation=True):
    return [{"epoch": e, "loss": 2.0 / e, "accuracy": 0.3 * e, "val_loss": 2.1 / e if validation else None,
             "val_accuracy": 0.28 * e if validation else None, "lr": 1e-3, "seconds": 1.0} for e in (1, 2, 3)]


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot_learning_curves draws, kept when it closes them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda figure=None: figures.append(figure) or close(figure))
    return figures


def texts(figure):
    title = figure._suptitle.get_text() if figure._suptitle is not None else ""
    labels = [[text.get_text() for text in axis.get_legend().get_texts()] for axis in figure.axes]
    return title, labels, [axis.get_ylabel() for axis in figure.axes]


def test_curves_have_a_title_and_a_validation_curve(tmp_path, drawn):
    path = tmp_path / "learning_curves.png"
    rundir.plot_learning_curves(path, history(), "digits: tess (alpha_post 1), mcu")
    assert path.read_bytes()[:4] == b"\x89PNG"
    title, labels, ylabels = texts(drawn[-1])
    assert title == "digits: tess (alpha_post 1), mcu"
    assert labels == [["train", "validation"]] * 2 and ylabels == ["loss", "accuracy"]


def test_without_validation_the_title_says_so(tmp_path, drawn):
    rundir.plot_learning_curves(tmp_path / "c.png", history(validation=False), "shd: bptt (alpha_post 1), vgg9")
    title, labels, _ = texts(drawn[-1])
    assert title == "shd: bptt (alpha_post 1), vgg9 (no validation split)"
    assert labels == [["train"]] * 2


def test_a_run_titles_its_curves_with_dataset_rule_and_model(tmp_path, drawn, monkeypatch):
    """finish() passes the run's dataset, rule and model as the title."""
    titles = []
    real = training.report.plot_learning_curves
    monkeypatch.setattr(training.report, "plot_learning_curves",
                        lambda path, rows, title="": titles.append(title) or real(path, rows, title))
    config = training.TrainConfig(dataset="nmnist", rule="stllr", model="vgg9", alpha_post=0.0)

    class Model:
        optimizer = type("O", (), {"learning_rate": type("L", (), {"numpy": lambda self: 1e-3})()})()

        def save(self, path):
            path.write_bytes(b"model")

        def count_params(self):
            return 1

        def get_weights(self):
            return []

    class Splits:
        skipped, empty, incomplete = {}, {}, []

        def class_counts(self):
            return {"train": [1], "validation": [1], "test": [1]}

    state = type("S", (), {"history": history()})()
    training.report.finish(tmp_path, config, Model(), state, Splits(), {"loss": 1.0, "accuracy": 0.5})
    assert titles == ["nmnist: stllr (alpha_post 0), vgg9"]
    assert texts(drawn[-1])[1] == [["train", "validation"]] * 2
