"""The fast training step: same math as the plain step, on CPU and (when present) on a GPU.

The GPU tests run only where CUDA is available (benchmarks/gpu_check.py prints the same checks
with timings); everything else runs on CPU in a few seconds. No timing is asserted.
"""

import copy
import functools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks import bench, gpu_check, tutorial
from sweep.config import load_config
from sweep.space import grid_trials as grid
from trainables import fast_step
from trainables.contract import TrainConfig
from trainables.models import get_model
from trainables.schedule import lr_at
from trainables.tensor_data import TensorData
from trainables.train import loss_fn, make_optimizer, train

torch.set_num_threads(1)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def digits() -> TensorData:
    """MNIST-shaped images (1x28x28) from a planted rule, so cnn1 runs at its real size."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(640, 1, 28, 28, generator=g)
    y = (x[:, 0, 10:18, 10:18].mean((1, 2)) * 20).long().clamp(-4, 5) + 4
    return TensorData(x[:512], y[:512], x[512:], y[512:], 10)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"batch_size": 32, "lr": 0.02, "epochs": 2, "dataset": "digits", **kw})


def test_no_graph_is_used_on_cpu_and_the_switch_changes_nothing_there(digits):
    assert not fast_step.use_cuda_graph(True, torch.device("cpu"), 8, 1000)
    on = [e.metrics for e in train(cfg(cuda_graph=True), digits)]
    off = [e.metrics for e in train(cfg(cuda_graph=False), digits)]
    strip = lambda ms: [(m.train_loss, m.val_loss, m.val_acc) for m in ms]  # noqa: E731
    assert strip(on) == strip(off)


def test_graphs_are_only_for_small_batches_on_cuda_with_steps_to_replay():
    gpu = torch.device("cuda")
    assert fast_step.use_cuda_graph(True, gpu, 8, 1000)
    assert not fast_step.use_cuda_graph(False, gpu, 8, 1000)
    assert not fast_step.use_cuda_graph(True, gpu, fast_step.GRAPH_MAX_BATCH * 2, 1000)
    assert not fast_step.use_cuda_graph(True, gpu, 8, fast_step.EAGER_WARMUP_STEPS)


@pytest.mark.parametrize("name", ["cnn1", "resnet8"])
def test_channels_last_model_gives_the_same_loss_and_gradients(digits, name):
    torch.manual_seed(0)
    plain = get_model(name)((1, 28, 28), 10).eval()  # eval: no dropout noise, same math
    fast = fast_step.to_channels_last(copy.deepcopy(plain))
    x, y = digits.x_train[:16], digits.y_train[:16]
    losses = []
    for model in (plain, fast):
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for p_plain, p_fast in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_plain.grad, rtol=1e-4, atol=1e-6)
    assert next(fast.parameters()).is_contiguous(memory_format=torch.channels_last)


def test_the_channels_last_gradient_hook_keeps_the_layout_nhwc():
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    flat = fast_step.to_channels_last(torch.nn.Sequential(torch.nn.Flatten()))(x)
    flat.sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.grad, torch.ones_like(x))


def test_eager_step_with_lr_zero_changes_nothing_and_with_lr_moves_downhill(digits):
    torch.manual_seed(0)
    model = get_model("cnn1")((1, 28, 28), 10).eval()
    before = [p.detach().clone() for p in model.parameters()]
    opt = make_optimizer(cfg(), model.parameters())
    loss_of = functools.partial(loss_fn, "classification")
    step = fast_step.EagerStep(
        fast_step.StepInputs(model, opt, loss_of, digits.x_train, digits.y_train)
    )
    idx = torch.arange(32)
    first = float(step(idx, 0.0))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    step(idx, 0.002)
    assert float(step(idx, 0.0)) < first


# ----------------------------------------------------------------------------- on a GPU only


def _trajectory(data: TensorData, mode: str, optimizer: str, steps: int = 100):
    """mode: eager (train()'s path without graphs), graph, or eager-same-opt (the graph path's
    optimizer and lr tensor, never captured)."""
    c = cfg(batch_size=16, optimizer=optimizer, lr=0.001 if optimizer == "adam" else 0.01)
    torch.manual_seed(0)
    model = get_model("cnn1")(data.in_shape, 10).cuda().train()
    loss_of = functools.partial(loss_fn, "classification")
    if mode != "eager":
        lr_t = torch.tensor(c.lr, device="cuda")
        opt = make_optimizer(c, model.parameters(), lr_t)
        inputs = fast_step.StepInputs(model, opt, loss_of, data.x_train, data.y_train)
        step = fast_step.GraphStep(
            inputs, lr_t, 16, eager_steps=3 if mode == "graph" else steps + 1
        )
    else:
        opt = make_optimizer(c, model.parameters())
        step = fast_step.EagerStep(
            fast_step.StepInputs(model, opt, loss_of, data.x_train, data.y_train)
        )
    order = torch.Generator(device="cuda").manual_seed(1)
    losses = []
    for i in range(steps):
        idx = torch.randint(0, data.n_train, (16,), device="cuda", generator=order)
        losses.append(step(idx, lr_at(i, c.lr, steps // 2, steps)).clone())
    return torch.stack(losses).cpu(), torch.cat(
        [p.detach().flatten().cpu() for p in model.parameters()]
    )


@pytest.fixture
def fp32_deterministic():
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic)
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic = False, True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic = flags


@cuda
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_graph_step_matches_eager_over_100_steps(digits, fp32_deterministic, optimizer):
    data = digits.to(torch.device("cuda"))
    graph_losses, graph_w = _trajectory(data, "graph", optimizer)
    same_losses, same_w = _trajectory(data, "eager-same-opt", optimizer)
    torch.testing.assert_close(graph_losses, same_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graph_w, same_w, rtol=1e-4, atol=1e-6)
    eager_losses, _ = _trajectory(data, "eager", optimizer)
    # SGD: fused vs foreach kernels agree to rounding. Adam: the capturable optimizer computes
    # its bias corrections in fp32 on the device, eager Adam in double on the host (measured
    # on an H100: 5.6e-5 relative over 100 steps)
    rtol = 1e-5 if optimizer != "adam" else 5e-4
    torch.testing.assert_close(graph_losses, eager_losses, rtol=rtol, atol=1e-6)


@cuda
def test_train_with_graphs_matches_train_without_and_resumes(digits, fp32_deterministic):
    data = digits.to(torch.device("cuda"))
    c = cfg(epochs=3, warmup_epochs=1)
    with_graph = [e.metrics for e in train(c, data)]
    without = [e.metrics for e in train(replace(c, cuda_graph=False), data)]
    for a, b in zip(with_graph, without, strict=True):
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-4)
    first = next(iter(train(c, data)))
    state = {k: (copy.deepcopy(v) if isinstance(v, dict) else v) for k, v in first.state.items()}
    rest = [e.metrics for e in train(c, data, resume=state)]
    assert rest[-1].val_loss == pytest.approx(with_graph[-1].val_loss, rel=1e-4)


# ------------------------------------------------------------------- benchmark pieces (CPU)


def test_tutorial_loop_and_the_gpu_checks_synthetic_digits_learn():
    arrays = gpu_check.synthetic_mnist(640, 200)
    first, last = list(tutorial.run_epochs(arrays, 32, 0.02, 1, 2, "cpu"))
    assert last["examples_seen"] == 2 * 20 * 32 and last["train_time_s"] > 0
    assert last["val_loss"] < first["val_loss"] and last["val_acc"] > 0.5
    ours = list(train(cfg(lr=0.02), gpu_check.tensor_data(arrays, "cpu")))[-1].metrics
    assert ours.val_acc > 0.5


def test_bench_reads_trial_times_from_result_folders_and_prints_one_table(tmp_path):
    for i, (params, rows) in enumerate(
        [
            (
                {"batch_size": 8},
                [
                    {"train_time_s": 1.0, "examples_seen": 4000},
                    {"train_time_s": 2.0, "examples_seen": 8000},
                ],
            ),
            ({"k": 2, "warmup_epochs": 0}, [{"train_time_s": 4.0, "examples_seen": 8000}]),
        ]
    ):
        folder = tmp_path / f"trial{i}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(params))
        (folder / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    trials = bench.read_trials(tmp_path)
    assert sorted(t["batch_size"] for t in trials) == [8, 16]
    assert sum(t["train_time_s"] for t in trials) == 6.0
    sweep = {"wall": 10.0, "fit": 8.0, "trials": trials, "trial_time": 6.0}
    rates = {
        (s, b): [100.0, 300.0, 200.0] for s in ("tutorial", "project") for b in bench.TRIAL_BATCHES
    }
    info = {
        "what": "test",
        "device": "cpu",
        "versions": "",
        "runs": 3,
        "sweep_runs": 1,
        "rate_device": "cpu",
    }
    table = bench.format_table(info, rates, {"tutorial": [sweep], "project": [sweep]}, 2)
    assert "torch" in table and "median" in table
    assert "200" in table.split("batch 8")[1].splitlines()[0]  # the median of 100, 300, 200
    assert "3.33" in table  # overhead: 10 s wall / (6 s / 2 slots)


def test_the_bench_sweeps_do_equal_work():
    """The project's side of make bench runs the article grid with nothing the tutorial-style
    grid does not do: no noise scale, no steps to a target (default.yaml turns both on)."""
    cmd = bench.sweep_command("project", Path("/tmp/x"), "p", quick=False)
    sets = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]
    cfg = load_config(cmd[cmd.index("--config") + 1], sets)
    assert not cfg.measure_noise_scale and cfg.target is None
    assert cfg.optuna.trials_per_batch_size == 0 and cfg.confirm.top_k == 0
    ours = sorted((t["batch_size"], round(t["lr"], 9), t["warmup_epochs"]) for t in grid(cfg))
    theirs = sorted(
        (8 * k, round(0.001 * k, 9), float(w))
        for k in tutorial.BATCH_MULTIPLES
        for w in tutorial.WARMUPS
    )
    assert ours == theirs and cfg.epochs == 5  # the tutorial's default epochs


def test_the_bench_refuses_to_compare_unequal_work():
    trial = {"batch_size": 8, "epochs": 5, "examples_seen": 20000, "noise_scale_epochs": 0}
    run = {"trials": [trial, {**trial, "batch_size": 16}]}
    assert "equal work: 2 trials, 40,000 training examples" in bench.check_equal_work([run], [run])
    fewer = {"trials": [trial]}
    with pytest.raises(RuntimeError, match="unequal work"):
        bench.check_equal_work([run], [fewer])
    measured = {"trials": [{**t, "noise_scale_epochs": 5} for t in run["trials"]]}
    with pytest.raises(RuntimeError, match="measured the noise scale in 10 epochs"):
        bench.check_equal_work([run], [measured])


def test_tutorial_dataset_decodes_each_image_through_pil():
    images = np.zeros((3, 28, 28), np.uint8)
    images[1, 5, 5] = 255
    ds = tutorial.MNISTImages(images, np.array([0, 1, 2]), tutorial.transforms.ToTensor())
    x, y = ds[1]
    assert x.shape == (1, 28, 28) and y == 1 and float(x[0, 5, 5]) == 1.0


@pytest.mark.slow
def test_bench_quick_smoke_prints_the_trial_table_without_the_sweeps(capsys):
    assert bench.main(["--quick", "--skip-sweep"]) == 0
    out = capsys.readouterr().out
    assert "device:" in out and f"torch {torch.__version__}" in out
    assert all(f"batch {b} " in out for b in bench.TRIAL_BATCHES)
