import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mlp_sweep.app import CONFIG_DIR
from mlp_sweep.config import validate
from mlp_sweep.errors import ConfigError


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR):
        return compose("config", overrides=list(overrides))


def test_default_config_is_the_lecture_model_on_mnist_5k():
    cfg = composed()
    validate(cfg)
    assert (cfg.model.name, cfg.model.activation, cfg.data.name) == (
        "softmax_ce",
        "sigmoid",
        "mnist_5k",
    )
    assert (cfg.hidden, cfg.init_std, cfg.batch_size, cfg.lr, cfg.seed) == (100, 0.1, 100, 0.1, 1)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == cfg.lr


@pytest.mark.parametrize(
    ("experiment", "variant"),
    [("l09_softmax_ce", "softmax_ce"), ("l09_sigmoid_mse", "sigmoid_mse")],
)
def test_lecture_experiments_pin_the_notebook_setup(experiment, variant):
    cfg = composed(f"experiment={experiment}")
    validate(cfg)
    assert cfg.model.name == variant and cfg.model.activation == "sigmoid"
    assert (cfg.data.name, cfg.data.val_size) == ("mnist", 0)  # all 60,000 training images
    assert (cfg.hidden, cfg.init_std, cfg.batch_size, cfg.epochs, cfg.seed) == (
        100,
        0.1,
        100,
        100,
        1,
    )
    assert OmegaConf.to_container(cfg.optimizer, resolve=True) == {
        "_target_": "torch.optim.SGD",
        "_partial_": True,
        "lr": 0.1,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "nesterov": False,
    }
    assert cfg.scheduler is None  # the learning rate stays 0.1 throughout, as in the lecture


def test_command_line_values_override_an_experiment():
    cfg = composed("experiment=l09_softmax_ce", "epochs=3", "data.root=/data")
    assert (cfg.epochs, cfg.data.root) == (3, "/data")


def test_groups_swap_variant_data_and_optimizer():
    cfg = composed("model=sigmoid_mse", "data=fashion_mnist", "optimizer=adam", "lr=0.003")
    assert (cfg.model.name, cfg.data.name) == ("sigmoid_mse", "fashion_mnist")
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.003


def test_hidden_accepts_a_list_for_several_layers():
    cfg = composed("hidden=[256,128]")
    validate(cfg)
    assert list(cfg.hidden) == [256, 128]


@pytest.mark.parametrize(
    "override", ["batch_size=abc", "lr=fast", "hiden=100", "model=foo", "seed=1.5"]
)
def test_schema_rejects_typos_and_wrong_types_while_composing(override):
    with pytest.raises(ConfigCompositionException):
        composed(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hidden=0", "hidden=0 is invalid: must be a positive integer or a list of them"),
        ("hidden=[64,-1]", "hidden=[64, -1] is invalid"),
        ("hidden=[]", "hidden=[] is invalid"),
        ("hidden=wide", "hidden='wide' is invalid"),
        ("init_std=0", "init_std=0.0 is invalid: must be a number > 0, or null"),
        ("init_std=-0.1", "init_std=-0.1 is invalid"),
        ("batch_size=0", "batch_size=0 is invalid: must be an integer > 0"),
        ("lr=0", "lr=0.0 is invalid: must be a number > 0"),
        ("lr=inf", "lr=inf is invalid"),
        ("epochs=0", "epochs=0 is invalid: must be an integer > 0"),
        ("seed=-1", "seed=-1 is invalid: must be an integer >= 0"),
        (
            "model.activation=softplus",
            "model.activation='softplus' is invalid: allowed: sigmoid, relu, tanh",
        ),
        ("device=gpu", "device='gpu' is invalid: allowed: auto, cpu, cuda, cuda:N, mps"),
        ("objective=test_acc", "objective='test_acc' is invalid: the test set is never used"),
        ("objective=accuracy", "objective='accuracy' is invalid: allowed: train_loss"),
        ("+extra=1", "extra is not a config key"),
        ("optimizer._target_=torch.optim.Nope", "optimizer._target_='torch.optim.Nope' is invalid"),
    ],
)
def test_validate_names_the_key_the_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        validate(composed(override))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_validation_objective_needs_a_validation_set():
    with pytest.raises(ConfigError, match=r"needs a validation set but data.val_size=0"):
        validate(composed("experiment=l09_softmax_ce", "objective=val_acc"))


def test_init_std_null_means_pytorch_default_init():
    cfg = composed("init_std=null")
    validate(cfg)
    assert cfg.init_std is None


def test_a_wrong_key_in_a_users_config_file_keeps_its_reason(run_app, tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\nhiden: 7\n")
    result = run_app("--config-dir", "conf", "--config-name", "mine", "epochs=1")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "Key 'hiden' not in 'Config'. Did you mean: 'hidden'?" in line


def test_a_callback_target_that_is_not_trusted_is_one_line(run_app):
    result = run_app("-m", "epochs=1", "+hydra.callbacks.x._target_=os.system")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: hydra.callbacks.x: Target 'os.system' cannot be authorized")


NO_JOB_NOPE = "${hydra:job.nope} names no key of the job's Hydra config (hydra.job.nope)"
NO_JOB_NMU = "${hydra:job.nmu} names no key of the job's Hydra config (hydra.job.nmu)"


@pytest.mark.parametrize(
    ("args", "key", "reason"),
    [
        (["tags=[${x}]"], "tags[0]", "Interpolation key 'x' not found"),
        (["lr=${x}"], "lr", "Interpolation key 'x' not found"),  # not optimizer.lr: ${lr}
        (["-m", "tags=[${x}]"], "tags[0]", "Interpolation key 'x' not found"),
        (["-m", "hidden=10,20", "data.cache_dir=${nowhere:y}"], "data.cache_dir",
         "Unsupported interpolation type nowhere"),
        (["lr=${oc.env:MLP_SWEEP_UNSET}"], "lr",
         "Environment variable 'MLP_SWEEP_UNSET' not found"),
        (["-m", "hidden=10,20", "lr=${oc.env:MLP_SWEEP_UNSET}"], "lr",
         "Environment variable 'MLP_SWEEP_UNSET' not found"),
        (["hparams_search=optuna", "tags=[${oc.env:MLP_SWEEP_UNSET}]"], "tags[0]",
         "Environment variable 'MLP_SWEEP_UNSET' not found"),  # before its study is made
        # A job's own Hydra config has no job.nope: refused before any job takes a folder.
        (["tags=[${hydra:job.nope}]"], "tags[0]", NO_JOB_NOPE),
        (["-m", "hidden=10,20", "tags=[${hydra:job.nope}]"], "tags[0]", NO_JOB_NOPE),
        (["hparams_search=optuna", "tags=[${hydra:job.nope}]"], "tags[0]", NO_JOB_NOPE),
        # Hydra's resolver gives None for a key it lacks, which init_std takes (PyTorch's init).
        (["init_std=${hydra:job.nmu}"], "init_std", NO_JOB_NMU),
        (["-m", "hidden=10,20", "init_std=${hydra:job.nmu}"], "init_std", NO_JOB_NMU),
        (["hparams_search=optuna", "init_std=${hydra:job.nmu}"], "init_std", NO_JOB_NMU),
        (["-m", "hidden=10,20", "init_std=${hydra:runtime.choices.hydra/launchr}"], "init_std",
         "${hydra:runtime.choices.hydra/launchr} names no key of the job's Hydra config "
         "(hydra.runtime.choices.hydra/launchr)"),
        # A single run's Hydra config has the key, without a value: only a sweep's jobs have one.
        (["seed=${hydra:job.num}"], "seed",
         "${hydra:job.num} has no value in a single run: Hydra sets it for each job of a sweep "
         "(-m)"),
        # The sweeper sees the hydra node, where this resolves; each job's config has none.
        (["-m", "hidden=10,20", "tags=[${hydra.job.name}]"], "tags[0]",
         "${hydra.job.name} refers to the hydra node, which a job's config does not hold; "
         "Hydra's resolver reads it: ${hydra:job.name}"),
    ],
)  # fmt: skip
def test_a_reference_that_cannot_resolve_is_one_line_and_nothing_is_written(
    run_app, tmp_path, args, key, reason
):
    result = run_app(*args, "epochs=1", "hydra.run.dir=out/run", "hydra.sweep.dir=out/sweep")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line == f"error: {key} is invalid: {reason}"
    assert not (tmp_path / "out/run").exists() and not (tmp_path / "out/sweep").exists()
    assert not (tmp_path / "outputs").exists()  # a search's study


@pytest.mark.parametrize("bad", ["lr=-1", "lr=${oc.env:MLP_SWEEP_UNSET}"])
def test_a_run_refused_in_its_default_folder_leaves_no_folder(run_app, tmp_path, bad):
    result = run_app(bad, "epochs=1")  # outputs/runs/<date>/<time>, as the README's first run
    assert result.code == 2 and result.err.startswith("error: lr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sweep", [["-m"], ["hparams_search=optuna"]], ids=["grid", "search"])
@pytest.mark.parametrize("bad", ["objective=val_ac", "tags=[${x}]"])
def test_a_sweep_refused_for_bad_input_says_why_in_one_line(run_app, recwarn, sweep, bad):
    # The sweep's console, and a search's study, are set up from the sweep's config before
    # the sweeper checks its jobs.
    result = run_app(*sweep, bad, "epochs=1", "hydra.sweep.dir=out/sweep")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    key = "objective='val_ac'" if bad.startswith("objective") else "tags[0]"
    assert line.startswith(f"error: {key} is invalid: ")
    assert [str(w.message) for w in recwarn if "Callback" in str(w.message)] == []


def test_a_key_that_one_of_a_grids_choices_lacks_names_that_job(run_app, tmp_path):
    result = run_app("-m", "optimizer=sgd,adam", "optimizer.momentum=0.5", "epochs=1")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: job #1 (optimizer=adam optimizer.momentum=0.5 epochs=1) cannot be composed: "
        "Could not override 'optimizer.momentum': Key 'momentum' is not in struct"
    ]
    assert not (tmp_path / "outputs").exists()
    deleted = run_app("-m", "optimizer=sgd,adam", "~optimizer.momentum", "epochs=1")
    assert deleted.code == 2
    assert deleted.err.strip().splitlines() == [
        "error: job #1 (optimizer=adam ~optimizer.momentum epochs=1) cannot be composed: "
        "Could not delete from config. 'optimizer.momentum' does not exist."
    ]


@pytest.mark.parametrize(
    ("subdir", "reason"),
    [
        ("${hydra:job.nope}", NO_JOB_NOPE),
        ("${nope}", "Interpolation key 'nope' not found"),
        ("${hydra:job.nmu}", NO_JOB_NMU),
        ("run_${hydra:job.nope}", NO_JOB_NOPE),  # in a string: Hydra's resolver gives None
    ],
)  # fmt: skip
def test_a_sweep_subdir_that_cannot_name_a_jobs_folder_is_one_line(
    run_app, tmp_path, subdir, reason
):
    result = run_app("-m", "hidden=10,20", "epochs=1", f"hydra.sweep.subdir={subdir}",
                     "hydra.sweep.dir=out/sweep")  # fmt: skip
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line == f"error: hydra.sweep.subdir={subdir} is invalid: {reason}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["hydra.run.dir=out/rr_${hydra:job.nope}"], NO_JOB_NOPE),
        (["hydra.run.dir=out/rr_${hydra:job.num}"],
         "${hydra:job.num} has no value in a single run: Hydra sets it for each job of a sweep "
         "(-m)"),
        (["-m", "hidden=10,20", "hydra.sweep.dir=out/s_${hydra:job.nope}"], NO_JOB_NOPE),
        (["hparams_search=optuna", "hydra.sweep.dir=out/s_${hydra:job.nope}"], NO_JOB_NOPE),
        # Each job resolved it to its own number: a sweep folder per job, the summary in one.
        (["-m", "hidden=10,20", "hydra.sweep.dir=out/s_${hydra:job.num}"],
         "${hydra:job.num} has no value for the sweep as a whole: Hydra sets it for each job "
         "(name their folders with hydra.sweep.subdir)"),
    ],
)  # fmt: skip
def test_a_folder_naming_a_key_hydra_lacks_is_one_line(run_app, tmp_path, args, reason):
    # Hydra's resolver gives such a key as None: the run went to a folder out/rr_None.
    result = run_app(*args, "epochs=1")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    key, value = args[-1].split("=", 1)
    assert line == f"error: {key}={value} is invalid: {reason}"
    assert list(tmp_path.iterdir()) == []  # nor a search's study


def test_a_sweep_folder_that_cannot_resolve_is_one_line_and_no_warning(run_app, recwarn, tmp_path):
    result = run_app("-m", "hidden=10,20", "epochs=1", "hydra.sweep.dir=out/s_${hydra.job.num}")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: hydra.sweep.dir is invalid: ") and "hydra.job.num" in line
    assert [str(w.message) for w in recwarn if "Callback" in str(w.message)] == []
    assert list(tmp_path.iterdir()) == []


def test_a_folder_naming_a_quoted_key_of_hydras_config_is_taken(run_app, tmp_path):
    result = run_app("epochs=1", "hydra.run.dir=out/run_${hydra:'job.name'}")
    assert result.code == 0, result.err
    assert (tmp_path / "out/run_mlp_sweep/metrics.json").is_file()


@pytest.mark.parametrize("dir_", ["s_${lr}", "s_${hydra:job.override_dirname}"])
def test_a_sweep_folder_that_differs_from_job_to_job_is_one_line(run_app, tmp_path, dir_):
    # Each job resolved it to a folder of its own: the summary covered the last one only.
    result = run_app("-m", "lr=0.1,0.2", "epochs=1", f"hydra.sweep.dir=out/{dir_}")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: hydra.sweep.dir=out/{dir_} gives job #")
    assert "not the sweep's folder" in line and "a sweep has one folder" in line
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_subdir_giving_two_jobs_one_folder_is_refused_before_any_trains(run_app, tmp_path):
    result = run_app("-m", "hidden=10,20", "epochs=1", "seed=4",
                     "hydra.sweep.subdir=run_${seed}", "hydra.sweep.dir=out/sweep")  # fmt: skip
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: hydra.sweep.subdir=run_${seed} gives jobs #0 (hidden=10 ")
    assert "and #1 (hidden=20 " in line and "one folder, out/sweep/run_4" in line
    assert not (tmp_path / "out").exists()
